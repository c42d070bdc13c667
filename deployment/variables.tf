variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix for every resource."
  type        = string
  default     = "hello"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into two public and two private subnets."
  type        = string
  default     = "10.20.0.0/16"
}

variable "nat_gateway_per_zone" {
  description = "One NAT gateway per zone (true), so that either zone's failure leaves the other able to start tasks; false: one, about $33/month less, for a test stack."
  type        = bool
  default     = true
}

variable "image_tag" {
  description = "Image tag for the first task definition; releases replace it (scripts/deploy.sh)."
  type        = string
  default     = "bootstrap"
}

variable "container_port" {
  description = "Port the service listens on inside the container."
  type        = number
  default     = 8080
}

variable "architecture" {
  description = "CPU architecture of the instances and the image: arm64 (Graviton) or x86_64. It chooses the ECS-optimised AMI, the default instance type and the task's runtime platform; releases build the binary and image for it."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "arm64 or x86_64."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the ECS capacity; empty: t4g.small for arm64, t3.small for x86_64. It must match architecture."
  type        = string
  default     = ""
}

variable "instances_min" {
  description = "Fewest ECS instances."
  type        = number
  default     = 2
}

variable "instances_max" {
  description = "Most ECS instances."
  type        = number
  default     = 4
}

variable "tasks_desired" {
  description = "Tasks to run at first; target tracking adjusts it between min and max."
  type        = number
  default     = 2
}

variable "tasks_min" {
  description = "Fewest tasks."
  type        = number
  default     = 2
}

variable "tasks_max" {
  description = "Most tasks."
  type        = number
  default     = 8
}

variable "task_cpu" {
  description = "CPU units reserved per task."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Memory (MiB) per task; the service needs a few MiB."
  type        = number
  default     = 128
}

variable "store" {
  description = "Where the counts live: replication_group (one primary and its replicas: every name in one key), cluster (ElastiCache cluster mode: redis_shards node groups, names spread over their slots) or serverless (ElastiCache Serverless for Valkey, within serverless_max_data_gb and serverless_max_ecpu_per_second). See the README: Choosing the store."
  type        = string
  default     = "replication_group"

  validation {
    condition     = contains(["replication_group", "cluster", "serverless"], var.store)
    error_message = "store must be replication_group, cluster or serverless."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type (replication_group and cluster)."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_nodes" {
  description = "replication_group: Redis nodes (1 primary + replicas); 2 or more enables automatic failover."
  type        = number
  default     = 2
}

variable "redis_shards" {
  description = "cluster: node groups, each a primary serving a share of the slots."
  type        = number
  default     = 3

  validation {
    condition     = var.redis_shards >= 1 && var.redis_shards <= 64
    error_message = "redis_shards must be from 1 to 64: the names are spread over 64 keys (REDIS_KEY_SHARDS), so more shards would hold none."
  }
}

variable "redis_replicas_per_shard" {
  description = "cluster: replicas of each node group's primary (1 or more: automatic failover)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas_per_shard >= 1 && var.redis_replicas_per_shard <= 5
    error_message = "redis_replicas_per_shard must be from 1 to 5 (cluster mode fails over to a replica)."
  }
}

variable "serverless_max_data_gb" {
  description = "serverless: the most data the cache may hold (cache_usage_limits), in GB; what it bills per GB-hour stops there, and the service stops admitting new names at STORE_NEW_NAMES_MAX_MEMORY_PERCENT of it."
  type        = number
  default     = 1

  validation {
    condition     = var.serverless_max_data_gb >= 1 && var.serverless_max_data_gb <= 5000
    error_message = "serverless_max_data_gb must be from 1 to 5000."
  }
}

variable "serverless_max_ecpu_per_second" {
  description = "serverless: the most ElastiCache Processing Units the cache may use per second (cache_usage_limits); past it, commands are throttled. About one ECPU per greeting."
  type        = number
  default     = 50000

  validation {
    condition     = var.serverless_max_ecpu_per_second >= 1000 && var.serverless_max_ecpu_per_second <= 15000000
    error_message = "serverless_max_ecpu_per_second must be from 1,000 to 15,000,000."
  }
}

variable "redis_wait_replicas" {
  description = "REDIS_WAIT_REPLICAS: replicas a greeting must reach before its 200. null: 1 where every primary has 2 replicas or more (one failover then leaves one to wait for), else 0. Not for serverless, which has no WAIT."
  type        = number
  default     = null

  validation {
    condition = var.redis_wait_replicas == null ? true : (
      var.redis_wait_replicas >= 0 && (var.store == "serverless" ? var.redis_wait_replicas == 0 : var.redis_wait_replicas <= (var.store == "cluster" ? var.redis_replicas_per_shard : var.redis_nodes - 1))
    )
    error_message = "redis_wait_replicas must be at most each primary's replicas (redis_nodes - 1, or redis_replicas_per_shard), and 0 with serverless (no WAIT): more could never be reached, and every greeting would be 504."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener (HTTP then redirects to it). Required unless plain_http is true."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_arn != "" || var.plain_http
    error_message = "Set certificate_arn to an ACM certificate's ARN, or plain_http = true to serve plain HTTP on purpose (e.g. a first try)."
  }
}

variable "plain_http" {
  description = "Serve plain HTTP when no certificate_arn is given: only on purpose, e.g. a first try; the plain_http_warning output says so."
  type        = bool
  default     = false
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic; empty for none."
  type        = string
  default     = ""
}

variable "pagerduty_endpoint" {
  description = "PagerDuty (or other) HTTPS integration URL subscribed to the alarm topic; empty for none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the service's logs."
  type        = number
  default     = 365
}

variable "access_log_days" {
  description = "Days the load balancer's access logs are kept in S3."
  type        = number
  default     = 90
}

variable "waf_rate_limit" {
  description = "Requests one client address may make in 5 minutes before the WAF blocks it (each new name adds a member to the sorted set for good)."
  type        = number
  default     = 1000

  validation {
    condition     = var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000
    error_message = "Between 10 and 2,000,000,000 (WAF's bounds for a rate-based rule)."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion (set false before terraform destroy)."
  type        = bool
  default     = true
}

variable "private_paths_allowed_cidrs" {
  description = "Client CIDRs the load balancer lets through to /metrics and /health/cluster; everyone else gets a 404. Empty: nobody."
  type        = list(string)
  default     = []

  validation {
    # A listener rule holds at most five condition values: the path and up to four addresses.
    condition     = length(var.private_paths_allowed_cidrs) <= 4 && alltrue([for c in var.private_paths_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "Up to four CIDR blocks, such as 203.0.113.0/24."
  }
}

variable "latency_alarm_ms" {
  description = "Alarm when the worst task's p99 latency of /hello/{name} stays above this many milliseconds."
  type        = number
  default     = 250
}

variable "http_max_connections" {
  description = "Client connections a task keeps open (the service's HTTP_MAX_CONNECTIONS); the task's nofile limit is sized from it."
  type        = number
  default     = 10000

  validation {
    # The service's own bound, which also keeps the nofile limit under the kernel's nr_open.
    condition     = var.http_max_connections >= 1 && var.http_max_connections <= 1000000 && floor(var.http_max_connections) == var.http_max_connections
    error_message = "A whole number from 1 to 1,000,000."
  }
}

variable "idle_timeouts" {
  description = "Keep-alive idle time in seconds: the load balancer's idle_timeout and the service's HTTP_IDLE_TIMEOUT_MS. The service's must be the longer, so that the load balancer always closes an idle connection first and never sends a request down one the service has just closed (a 502)."
  type = object({
    load_balancer = number
    service       = number
  })
  default = { load_balancer = 60, service = 75 }

  validation {
    condition     = var.idle_timeouts.service > var.idle_timeouts.load_balancer
    error_message = "idle_timeouts.service must be longer than idle_timeouts.load_balancer: the load balancer would otherwise reuse connections the service has closed, and answer 502."
  }

  validation {
    condition     = var.idle_timeouts.load_balancer >= 1 && var.idle_timeouts.load_balancer <= 4000
    error_message = "idle_timeouts.load_balancer: from 1 to 4000 seconds (the ALB's range)."
  }
}

variable "ecs_ami_id" {
  description = "The ECS instances' AMI, pinned; null: AWS's recommended ECS-optimised Amazon Linux 2023 AMI for the architecture, read from SSM when the launch template is made and kept until it is replaced on purpose (see the README: Instances are refreshed)."
  type        = string
  default     = null

  validation {
    condition     = var.ecs_ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ecs_ami_id))
    error_message = "An AMI id such as ami-0123456789abcdef0, or null."
  }
}

variable "requests_per_task_target" {
  description = "Target tracking: load balancer requests per task per minute that the service scales out above (the CPU target scales it too). See the README: How it scales."
  type        = number
  default     = 480000
}

variable "redis_restore_snapshot" {
  description = "Name of an ElastiCache snapshot (e.g. the final snapshot of a destroyed stack) that a new replication group starts from; null: empty. Only read when the group is created."
  type        = string
  default     = null
}
