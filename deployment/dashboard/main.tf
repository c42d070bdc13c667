# The dashboard's body, built from names alone (no resources and no provider), so that a test
# can render it with a bare `terraform apply` and check that it names only metrics this stack
# produces: tests/deployment.rs.

variable "region" {
  description = "Region of every metric."
  type        = string
}

variable "load_balancer" {
  description = "The ALB's LoadBalancer dimension (its ARN suffix)."
  type        = string
}

variable "ecs_cluster" {
  description = "The ECS ClusterName dimension."
  type        = string
}

variable "ecs_service" {
  description = "The ECS ServiceName dimension."
  type        = string
}

variable "redis_clusters" {
  description = "CacheClusterId of each Redis node (ElastiCache publishes per node); empty for a serverless cache."
  type        = list(string)
}

variable "serverless_cache" {
  description = "Name of the ElastiCache Serverless cache (its metrics' clusterId); empty for a node-based store."
  type        = string
  default     = ""
}

variable "namespace" {
  description = "Namespace of the service's own metrics (METRICS_EMF_NAMESPACE)."
  type        = string
}

variable "alarm_arns" {
  description = "Alarms whose states the dashboard shows."
  type        = list(string)
}

locals {
  alb = ["AWS/ApplicationELB"]
  lb  = ["LoadBalancer", var.load_balancer]
  ecs = ["AWS/ECS"]
  svc = ["ClusterName", var.ecs_cluster, "ServiceName", var.ecs_service]

  # The service's route prefixes besides /hello/{name} (see src/emf.rs), for p99 by route.
  other_routes = ["Root", "Counts", "Health", "HealthCluster", "Metrics", "Other"]

  # x, y, width, height on the dashboard's 24-column grid; three widgets a row.
  place = { for i in range(length(local.metric_widgets)) : i => { x = (i % 3) * 8, y = floor(i / 3) * 6, width = 8, height = 6 } }
  # The alarms' row, below the last row of metrics.
  alarms_y = ceil(length(local.metric_widgets) / 3) * 6

  metric_widgets = concat(local.service_widgets, length(var.redis_clusters) > 0 ? local.node_widgets : [], var.serverless_cache == "" ? [] : local.serverless_widgets)

  service_widgets = [
    {
      title = "Requests and 5xx (load balancer, per minute)"
      metrics = [
        concat(local.alb, ["RequestCount"], local.lb, [{ stat = "Sum", label = "requests" }]),
        concat(local.alb, ["HTTPCode_Target_5XX_Count"], local.lb, [{ stat = "Sum", label = "5xx from tasks", yAxis = "right" }]),
        concat(local.alb, ["HTTPCode_ELB_5XX_Count"], local.lb, [{ stat = "Sum", label = "5xx from the load balancer", yAxis = "right" }]),
      ]
    },
    {
      title = "Target response time (load balancer, seconds)"
      metrics = [
        concat(local.alb, ["TargetResponseTime"], local.lb, [{ stat = "p50", label = "p50" }]),
        concat(local.alb, ["TargetResponseTime"], local.lb, [{ stat = "p99", label = "p99" }]),
      ]
    },
    {
      title = "Store unavailable (503), outcome unknown (504) and increments (service, per minute)"
      metrics = [
        [var.namespace, "StoreUnavailable", { stat = "Sum", label = "503 store_unavailable" }],
        [var.namespace, "StoreOutcomeUnknown", { stat = "Sum", label = "504 store_outcome_unknown" }],
        [var.namespace, "Increments", { stat = "Sum", label = "increments stored", yAxis = "right" }],
      ]
    },
    {
      title = "/hello/{name} latency (service, ms, worst task)"
      metrics = [
        [var.namespace, "HelloLatencyP50", { stat = "Maximum", label = "p50" }],
        [var.namespace, "HelloLatencyP99", { stat = "Maximum", label = "p99" }],
      ]
    },
    {
      title   = "Latency p99 by route (service, ms, worst task)"
      metrics = [for r in local.other_routes : [var.namespace, "${r}LatencyP99", { stat = "Maximum", label = r }]]
    },
    {
      title = "Connections (service)"
      metrics = [
        [var.namespace, "ConnectionsOpen", { stat = "Maximum", label = "open (largest task)" }],
        [var.namespace, "ConnectionsRefused", { stat = "Sum", label = "refused per minute", yAxis = "right" }],
      ]
    },
    {
      title = "ECS service CPU and memory (% of reservation)"
      metrics = [
        concat(local.ecs, ["CPUUtilization"], local.svc, [{ stat = "Average", label = "CPU" }]),
        concat(local.ecs, ["MemoryUtilization"], local.svc, [{ stat = "Average", label = "memory" }]),
      ]
    },
    {
      title = "Store admission: new names refused, Redis out of memory (service, per minute)"
      metrics = [
        [var.namespace, "NamesRefused", { stat = "Sum", label = "greetings of new names refused (store full)" }],
        [var.namespace, "StoreFull", { stat = "Sum", label = "-OOM from Redis", yAxis = "right" }],
      ]
    },
  ]

  # The Redis nodes of a replication group or a cluster, per node.
  node_widgets = [
    {
      title = "Redis engine CPU and memory (%)"
      metrics = concat(
        [for id in var.redis_clusters : ["AWS/ElastiCache", "EngineCPUUtilization", "CacheClusterId", id, { stat = "Maximum", label = "${id} engine CPU" }]],
        [for id in var.redis_clusters : ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", id, { stat = "Maximum", label = "${id} memory" }]],
      )
    },
    {
      title = "Redis connections and evictions"
      metrics = concat(
        [for id in var.redis_clusters : ["AWS/ElastiCache", "CurrConnections", "CacheClusterId", id, { stat = "Maximum", label = "${id} connections" }]],
        [for id in var.redis_clusters : ["AWS/ElastiCache", "Evictions", "CacheClusterId", id, { stat = "Sum", label = "${id} evictions", yAxis = "right" }]],
      )
    },
  ]

  # A serverless cache, as a whole (dimension clusterId).
  serverless = ["AWS/ElastiCache"]
  cache      = ["clusterId", var.serverless_cache]
  serverless_widgets = [
    {
      title = "Serverless cache: data stored (bytes) and processing units (per minute)"
      metrics = [
        concat(local.serverless, ["BytesUsedForCache"], local.cache, [{ stat = "Maximum", label = "data stored" }]),
        concat(local.serverless, ["ElastiCacheProcessingUnits"], local.cache, [{ stat = "Sum", label = "ECPUs", yAxis = "right" }]),
      ]
    },
    {
      title = "Serverless cache: throttled commands, connections and write latency (µs)"
      metrics = [
        concat(local.serverless, ["ThrottledCmds"], local.cache, [{ stat = "Sum", label = "throttled commands" }]),
        concat(local.serverless, ["CurrConnections"], local.cache, [{ stat = "Maximum", label = "connections" }]),
        concat(local.serverless, ["SuccessfulWriteRequestLatency"], local.cache, [{ stat = "p99", label = "write latency p99", yAxis = "right" }]),
      ]
    },
  ]

  widgets = concat(
    [for i, w in local.metric_widgets : merge(local.place[i], {
      type = "metric"
      properties = {
        title   = w.title
        region  = var.region
        view    = "timeSeries"
        period  = 60
        metrics = w.metrics
      }
    })],
    [{
      type   = "alarm"
      x      = 0
      y      = local.alarms_y
      width  = 24
      height = 4
      properties = {
        title  = "Alarms"
        alarms = var.alarm_arns
      }
    }],
  )
}

output "body" {
  description = "The dashboard body (JSON)."
  value       = jsonencode({ start = "-PT6H", widgets = local.widgets })
}
