# The counts' store, one of three (var.store; README: Choosing the store), each encrypted at rest
# with the stack's key and in transit (TLS), reached only from the instances, with a password made
# here and handed to the tasks only as a secret (the whole rediss:// URL):
#
#   replication_group  one primary and its replicas (redis_nodes): every name in one key, WAIT
#                      available. The default, and what stacks made before had.
#   cluster            ElastiCache cluster mode: redis_shards node groups of a primary and
#                      redis_replicas_per_shard replicas; the service spreads the names over 64
#                      keys, so over every shard's slots.
#   serverless         ElastiCache Serverless for Valkey: no nodes to size, data in three zones,
#                      billed per GB-hour stored and per ECPU, both capped by cache_usage_limits so
#                      that no client can grow the bill without bound. No WAIT there.
#
# Each keeps its counts through `terraform destroy` and replacing changes (prevent_destroy), with
# daily snapshots and, for the node-based ones, a final snapshot (README: Teardown).

resource "random_password" "redis" {
  length  = 48
  special = false
}

# Redis's eviction policy, written down. ElastiCache's default, volatile-lru, evicts only keys
# with a TTL, which the sorted sets have not: a full node refuses writes either way, but nothing
# here said so, and a key with a TTL added later would be evicted. noeviction: Redis never
# drops data to make room. The service stops admitting new names before a node is full
# (issue 26); past maxmemory Redis answers -OOM (the StoreFull alarm). The family follows the
# engine's major version (tests/deployment.rs checks that the two agree).
resource "aws_elasticache_parameter_group" "main" {
  count       = local.store_replication_group ? 1 : 0
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "${var.name}: counts are never evicted"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

# The same policy for cluster mode, which a parameter group must switch on.
resource "aws_elasticache_parameter_group" "cluster" {
  count       = local.store_cluster ? 1 : 0
  name        = "${var.name}-redis7-cluster"
  family      = "redis7"
  description = "${var.name}: cluster mode, counts are never evicted"

  parameter {
    name  = "cluster-enabled"
    value = "yes"
  }

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

# Stacks applied before the store was a choice had this group as the only one.
moved {
  from = aws_elasticache_replication_group.main
  to   = aws_elasticache_replication_group.main[0]
}

moved {
  from = aws_elasticache_parameter_group.main
  to   = aws_elasticache_parameter_group.main[0]
}

resource "aws_elasticache_replication_group" "main" {
  # checkov:skip=CKV2_AWS_50:Multi-AZ failover is on whenever redis_nodes > 1, which is the default (2).
  count                      = local.store_replication_group ? 1 : 0
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
  parameter_group_name       = aws_elasticache_parameter_group.main[0].name
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
  # replace the group (kms_key_id, engine, a snapshot_name, the subnet group, another store…),
  # stop at the plan instead of deleting it. To destroy it on purpose, see the README's teardown.
  lifecycle {
    prevent_destroy = true
  }
}

# Cluster mode: the slots shared among redis_shards primaries, each with its replicas in other
# zones. Clients find the nodes from the configuration endpoint (CLUSTER SHARDS) and follow
# MOVED/ASK, which the service does; a snapshot of the replication group restores into it
# (redis_restore_snapshot), after which `hello migrate-keys` spreads the one key over the family.
resource "aws_elasticache_replication_group" "cluster" {
  count                      = local.store_cluster ? 1 : 0
  replication_group_id       = var.name
  description                = "${var.name} counts, sharded"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_node_groups            = var.redis_shards
  replicas_per_node_group    = var.redis_replicas_per_shard
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.main.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  parameter_group_name       = aws_elasticache_parameter_group.cluster[0].name
  snapshot_retention_limit   = 7
  final_snapshot_identifier  = "${var.name}-final-${random_id.final_snapshot.hex}"
  snapshot_name              = var.redis_restore_snapshot
  auto_minor_version_upgrade = true
  apply_immediately          = false
  notification_topic_arn     = aws_sns_topic.notices.arn

  lifecycle {
    prevent_destroy = true
  }
}

# Serverless logs in with a user of a user group, not an AUTH token: the service's user may run
# only what the service sends; the default user every group must hold is switched off.
resource "aws_elasticache_user" "default" {
  count         = local.store_serverless ? 1 : 0
  user_id       = "${var.name}-default"
  user_name     = "default"
  engine        = "valkey"
  access_string = "off -@all"

  authentication_mode {
    type = "no-password-required"
  }
}

resource "aws_elasticache_user" "service" {
  count     = local.store_serverless ? 1 : 0
  user_id   = "${var.name}-service"
  user_name = "${var.name}-service"
  engine    = "valkey"
  # Sorted sets, the readings of INFO and the cluster's map, and the migration's script and
  # keys (README: Moving the counts to a cluster).
  access_string = "on ~* &* -@all +@sortedset +@connection +info +cluster|shards +cluster|slots +cluster|info +eval +exists +rename +del +get +set"

  authentication_mode {
    type      = "password"
    passwords = [random_password.redis.result]
  }
}

resource "aws_elasticache_user_group" "serverless" {
  count         = local.store_serverless ? 1 : 0
  user_group_id = "${var.name}-serverless"
  engine        = "valkey"
  user_ids      = [aws_elasticache_user.default[0].user_id, aws_elasticache_user.service[0].user_id]
}

resource "aws_elasticache_serverless_cache" "main" {
  count                = local.store_serverless ? 1 : 0
  name                 = var.name
  description          = "${var.name} counts"
  engine               = "valkey"
  major_engine_version = "8"
  kms_key_id           = aws_kms_key.main.arn
  security_group_ids   = [aws_security_group.redis.id]
  subnet_ids           = aws_subnet.private[*].id
  user_group_id        = aws_elasticache_user_group.serverless[0].user_group_id
  # What the bill may grow to, whatever clients send: data stored (the service stops admitting
  # new names at its watermark of this, REDIS_DATA_LIMIT_BYTES) and processing per second.
  cache_usage_limits {
    data_storage {
      maximum = var.serverless_max_data_gb
      unit    = "GB"
    }
    ecpu_per_second {
      maximum = var.serverless_max_ecpu_per_second
    }
  }
  # A daily snapshot, kept a week. Serverless keeps no final snapshot on deletion: take one
  # first (README: Teardown).
  snapshot_retention_limit = 7
  daily_snapshot_time      = "04:00"
  snapshot_arns_to_restore = var.redis_restore_snapshot == null ? null : ["arn:aws:elasticache:${var.region}:${data.aws_caller_identity.current.account_id}:snapshot:${var.redis_restore_snapshot}"]

  lifecycle {
    prevent_destroy = true
  }
}

locals {
  # Where the tasks reach the store, and as whom.
  redis_host = local.store_serverless ? one(aws_elasticache_serverless_cache.main[*].endpoint[0].address) : (
    local.store_cluster ? one(aws_elasticache_replication_group.cluster[*].configuration_endpoint_address) : one(aws_elasticache_replication_group.main[*].primary_endpoint_address)
  )
  redis_login = local.store_serverless ? "${one(aws_elasticache_user.service[*].user_name)}:${random_password.redis.result}" : ":${random_password.redis.result}"
  # ElastiCache publishes node metrics per member cluster ("hello-001", or "hello-0001-001" in
  # cluster mode); no metric carries a ReplicationGroupId dimension. None for serverless.
  redis_clusters = sort(concat(
    flatten(aws_elasticache_replication_group.main[*].member_clusters),
    flatten(aws_elasticache_replication_group.cluster[*].member_clusters),
  ))
}

resource "aws_secretsmanager_secret" "redis_url" {
  # checkov:skip=CKV2_AWS_57:Rotating the password needs a coordinated ElastiCache change; rotate with terraform (taint random_password.redis).
  name                    = "${var.name}/redis-url"
  description             = "rediss:// URL with the password, for the tasks' REDIS_URL"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://${local.redis_login}@${local.redis_host}:6379"
}
