# ElastiCache Redis, encrypted at rest and in transit, with an AUTH token made here and handed
# to the tasks only as a secret (the whole rediss:// URL), never as plain environment text.

resource "random_password" "redis" {
  length  = 48
  special = false
}

resource "aws_elasticache_subnet_group" "main" {
  name       = var.name
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_elasticache_replication_group" "main" {
  # checkov:skip=CKV2_AWS_50:Multi-AZ failover is on whenever redis_nodes > 1, which is the default (2).
  replication_group_id       = var.name
  description                = "${var.name} counts"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = var.redis_nodes
  automatic_failover_enabled = var.redis_nodes > 1
  multi_az_enabled           = var.redis_nodes > 1
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.main.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  snapshot_retention_limit   = 7
  auto_minor_version_upgrade = true
  apply_immediately          = false
  # Failovers, node replacements and maintenance, as they happen (ElastiCache publishes only to
  # an unencrypted topic: observability.tf).
  notification_topic_arn = aws_sns_topic.notices.arn
}

resource "aws_secretsmanager_secret" "redis_url" {
  # checkov:skip=CKV2_AWS_57:Rotating the AUTH token needs a coordinated ElastiCache change; rotate with terraform (taint random_password.redis).
  name                    = "${var.name}/redis-url"
  description             = "rediss:// URL with the AUTH token, for the tasks' REDIS_URL"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:6379"
}
