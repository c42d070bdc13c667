# ElastiCache Redis, encrypted at rest and in transit, with an AUTH token made here and handed
# to the tasks only as a secret (the whole rediss:// URL), never as plain environment text.

resource "random_password" "redis" {
  length  = 48
  special = false
}

# Redis's eviction policy, written down. ElastiCache's default, volatile-lru, evicts only keys
# with a TTL, which the sorted set has not: a full node refuses writes either way, but nothing
# here said so, and a key with a TTL added later would be evicted. noeviction: Redis never
# drops data to make room. The service stops admitting new names before the node is full
# (issue 26); past maxmemory Redis answers -OOM (the StoreFull alarm). The family follows the
# engine's major version (tests/deployment.rs checks that the two agree).
resource "aws_elasticache_parameter_group" "main" {
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "${var.name}: counts are never evicted"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

# Part of the final snapshot's name, made once per stack: a second stack of the same name, and
# its own final snapshot, never collide with the first one's.
resource "random_id" "final_snapshot" {
  byte_length = 4
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
  parameter_group_name       = aws_elasticache_parameter_group.main.name
  # A daily snapshot, kept a week.
  snapshot_retention_limit = 7
  # The automatic snapshots go with the group; this one stays, in this account and region,
  # until deleted by hand (README: Teardown). Restore it with redis_restore_snapshot.
  final_snapshot_identifier  = "${var.name}-final-${random_id.final_snapshot.hex}"
  snapshot_name              = var.redis_restore_snapshot
  auto_minor_version_upgrade = true
  apply_immediately          = false
  # Failovers, node replacements and maintenance, as they happen (ElastiCache publishes only to
  # an unencrypted topic: observability.tf).
  notification_topic_arn = aws_sns_topic.notices.arn

  # The counts live here and nowhere else. `terraform destroy`, and any change that would
  # replace the group (kms_key_id, engine, a snapshot_name, the subnet group…), stop at the plan
  # instead of deleting it. To destroy it on purpose, see the README's teardown.
  lifecycle {
    prevent_destroy = true
  }
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
