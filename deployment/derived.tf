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
  serverless_max_bytes   = var.serverless_max_data_gb * 1000000000
  redis_data_limit_bytes = local.store_serverless ? local.serverless_max_bytes : null
  # ElastiCache nodes, for the per-node metrics and alarms (none for serverless).
  redis_node_count = local.store_serverless ? 0 : (local.store_cluster ? var.redis_shards * (1 + var.redis_replicas_per_shard) : var.redis_nodes)

  # The alarms on the store, one table per kind of store, read by observability.tf's two alarm
  # resources. `pages`: to the alarm topic (someone now), else to the notice topic. `missing`:
  # CloudWatch's treat_missing_data.
  #
  # ElastiCache nodes: each alarm watches the worst node (one query per node, then MAX), so a
  # failover that swaps primary and replica changes nothing. Memory is used memory against
  # maxmemory: at 80% it is time to size up; at 90% the service begins to refuse new names (its
  # default STORE_NEW_NAMES_MAX_MEMORY_PERCENT), and at 100% Redis refuses writes (noeviction,
  # redis.tf): that pages. Evictions lose counts, and with noeviction there should never be one:
  # an eviction means the parameter group is not the one applied. Only replicas publish
  # ReplicationLag; the primary's missing data counts for nothing.
  redis_node_alarms = { for key, alarm in {
    memory-warn = {
      when        = true, metric = "DatabaseMemoryUsagePercentage", stat = "Maximum", period = 60, periods = 5
      threshold   = 80, pages = false, missing = "missing", label = "largest node's memory %"
      description = "A Redis node above 80% of its memory for 5 minutes: size the node up (redis_node_type) before new names are refused."
    }
    memory-page = {
      when        = true, metric = "DatabaseMemoryUsagePercentage", stat = "Maximum", period = 60, periods = 3
      threshold   = 90, pages = true, missing = "missing", label = "largest node's memory %"
      description = "A Redis node above 90% of its memory for 3 minutes: new names are being refused, and at 100% every greeting fails. Size up now (redis_node_type)."
    }
    cpu = {
      when        = true, metric = "EngineCPUUtilization", stat = "Maximum", period = 300, periods = 2
      threshold   = 80, pages = true, missing = "missing", label = "busiest node's engine CPU %"
      description = "Redis engine CPU above 80% on a node for 10 minutes (Redis is single-threaded)."
    }
    evictions = {
      when        = true, metric = "Evictions", stat = "Sum", period = 300, periods = 1
      threshold   = 0, pages = true, missing = "notBreaching", label = "evictions on the worst node"
      description = "Redis evicted keys: memory is full and data is being dropped."
    }
    replication-lag = {
      when        = local.redis_replicas > 0, metric = "ReplicationLag", stat = "Maximum", period = 60, periods = 5
      threshold   = 10, pages = true, missing = "notBreaching", label = "worst replica's lag (s)"
      description = "A Redis replica more than 10 s behind the primary for 5 minutes: a failover now would lose the counts since."
    }
  } : key => alarm if local.redis_node_count > 0 && alarm.when }

  # ElastiCache Serverless has no nodes: it publishes for the cache (dimension clusterId). Its
  # data against its data-storage maximum stands for the nodes' memory. Throttled commands mean
  # it scaled slower than the load, or hit serverless_max_ecpu_per_second: greetings fail with
  # 503s. ECPUs are summed over 5 minutes.
  serverless_alarms = local.store_serverless ? {
    data-warn = {
      metric      = "BytesUsedForCache", stat = "Maximum", period = 60, periods = 5
      threshold   = local.serverless_max_bytes * 0.8, pages = false, missing = "missing"
      description = "The serverless cache holds more than 80% of serverless_max_data_gb for 5 minutes: raise it before new names are refused."
    }
    data-page = {
      metric      = "BytesUsedForCache", stat = "Maximum", period = 60, periods = 3
      threshold   = local.serverless_max_bytes * 0.9, pages = true, missing = "missing"
      description = "The serverless cache holds more than 90% of serverless_max_data_gb for 3 minutes: new names are being refused, and at 100% every greeting fails. Raise serverless_max_data_gb now."
    }
    throttled = {
      metric      = "ThrottledCmds", stat = "Sum", period = 60, periods = 3
      threshold   = 0, pages = true, missing = "notBreaching"
      description = "The serverless cache throttled commands in 3 minutes in a row: it is at serverless_max_ecpu_per_second, or scaling more slowly than the load grows."
    }
    ecpu = {
      metric      = "ElastiCacheProcessingUnits", stat = "Sum", period = 300, periods = 2
      threshold   = var.serverless_max_ecpu_per_second * 300 * 0.8, pages = false, missing = "notBreaching"
      description = "The serverless cache used more than 80% of serverless_max_ecpu_per_second over 10 minutes: raise it before commands are throttled."
    }
  } : {}

  arm64 = var.architecture == "arm64"
  # The AMI is read from AWS's SSM parameter only when none is pinned.
  ecs_ami_from_ssm = var.ecs_ami_id == null
  # AWS's published parameter of the current ECS-optimised Amazon Linux 2023 AMI, per architecture.
  ami_parameter = local.arm64 ? "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id" : "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}
