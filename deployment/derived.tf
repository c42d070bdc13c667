# Values derived from the variables alone: no resource, no data source, no provider, so that
# tests/deployment.rs can evaluate them offline (terraform console over this file and
# variables.tf) with the variables an operator might set.

locals {
  # Descriptors besides the client connections: the Redis pool (REDIS_MAX_CONNECTIONS, 32),
  # peers asked for /health/cluster, AWS API calls, an epoll and an eventfd per worker, the
  # listener and stdio. A few dozen in practice; 1024 leaves room for raising those bounds.
  nofile_headroom = 1024
  # The task's open-file limit, soft and hard alike: the service raises its soft limit to the
  # hard one at start, and refuses connections past HTTP_MAX_CONNECTIONS itself.
  nofile = var.http_max_connections + local.nofile_headroom

  # The service's keep-alive idle time, in the milliseconds it reads.
  service_idle_timeout_ms = var.idle_timeouts.service * 1000

  # Regions whose load balancers write access logs as an Elastic Load Balancing account of the
  # region (the list in the ALB guide, "Attach a policy to your S3 bucket"); regions opened
  # since (August 2022 on: il-central-1, ap-southeast-4, ca-west-1, mx-central-1, …) have no
  # such account, and aws_elb_service_account fails there. Every region gets the log-delivery
  # service principal.
  elb_log_account_regions = [
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ca-central-1",
    "eu-central-1", "eu-west-1", "eu-west-2", "eu-south-1", "eu-west-3", "eu-north-1",
    "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "ap-south-1", "me-south-1", "sa-east-1", "us-gov-west-1", "us-gov-east-1",
  ]
  elb_log_account = contains(local.elb_log_account_regions, var.region)

  # The store (var.store) and what the service is told of it. The mode is said, not asked.
  store_replication_group = var.store == "replication_group"
  store_cluster           = var.store == "cluster"
  store_serverless        = var.store == "serverless"
  redis_mode              = local.store_replication_group ? "standalone" : "cluster"
  # Each primary's replicas (a serverless cache keeps its own, out of reach of WAIT).
  redis_replicas = local.store_cluster ? var.redis_replicas_per_shard : (local.store_replication_group ? var.redis_nodes - 1 : 0)
  # Wait for one replica where one is left to wait for after a failover: with a single replica,
  # WAIT 1 would make every greeting of the shard a 504 from the failover until the replaced
  # node has synced (minutes).
  redis_wait_replicas = var.redis_wait_replicas != null ? var.redis_wait_replicas : (local.redis_replicas >= 2 ? 1 : 0)
  # The memory new names are admitted against where Redis states no maxmemory: serverless's
  # data-storage maximum (GB of 10^9 bytes, the lower reading of "GB").
  redis_data_limit_bytes = local.store_serverless ? var.serverless_max_data_gb * 1000000000 : null
  # ElastiCache nodes, for the per-node metrics and alarms (none for serverless).
  redis_node_count = local.store_serverless ? 0 : (local.store_cluster ? var.redis_shards * (1 + var.redis_replicas_per_shard) : var.redis_nodes)

  arm64 = var.architecture == "arm64"
  # The AMI is read from AWS's SSM parameter only when none is pinned.
  ecs_ami_from_ssm = var.ecs_ami_id == null
  # AWS's published parameter of the current ECS-optimised Amazon Linux 2023 AMI, per architecture.
  ami_parameter = local.arm64 ? "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id" : "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}
