# Logs with retention, alerts to two SNS topics, and the dashboard. The service's own numbers
# arrive as metrics from its log lines (CloudWatch embedded metric format, METRICS_EMF) in the
# namespace local.emf_namespace, with no agent and no extra IAM permission.
#
#   alarms   what pages: alarms that need someone now, and ECS deployment and task events
#            (EventBridge). Encrypted with the service key; e-mail and PagerDuty subscribe.
#   notices  what informs: warnings (memory past 80%, new names refused) and ElastiCache's own
#            events (failovers, node replacements, maintenance). Not encrypted: ElastiCache
#            publishes only to an unencrypted topic (an encrypted one shows as inactive and
#            receives nothing). Its messages name alarms and nodes, never data or secrets.
#            E-mail subscribes.

resource "aws_cloudwatch_log_group" "service" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = "/vpc/${var.name}/rejected"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_sns_topic" "alarms" {
  name              = local.alarm_topic_name
  kms_master_key_id = aws_kms_key.main.id
}

resource "aws_sns_topic" "notices" {
  # checkov:skip=CKV_AWS_26:ElastiCache cannot publish to an encrypted topic (AWS's ElastiCache guide, "Event Notifications and Amazon SNS"); this topic carries only alarm and node names, no data.
  name = "${var.name}-notices"
}

resource "aws_sns_topic_subscription" "notices_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.notices.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_sns_topic_subscription" "pagerduty" {
  count                  = var.pagerduty_endpoint == "" ? 0 : 1
  topic_arn              = aws_sns_topic.alarms.arn
  protocol               = "https"
  endpoint               = var.pagerduty_endpoint
  endpoint_auto_confirms = true
}

locals {
  alarm_topic_name = "${var.name}-alarms"
  # For the key policy, which the topic itself refers to (kms.tf).
  alarm_topic_arn = "arn:aws:sns:${var.region}:${data.aws_caller_identity.current.account_id}:${local.alarm_topic_name}"
  alarm_actions   = [aws_sns_topic.alarms.arn]
  notice_actions  = [aws_sns_topic.notices.arn]
  lb_dimensions   = { LoadBalancer = aws_lb.main.arn_suffix }
  tg_dimensions   = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = aws_lb_target_group.main.arn_suffix }
  ecs_dimensions  = { ClusterName = aws_ecs_cluster.main.name, ServiceName = aws_ecs_service.main.name }
  emf_namespace   = var.name
  # Serverless publishes under the cache's name, in the dimension clusterId (not
  # CacheClusterId, which is the nodes').
  serverless_dimensions = { clusterId = var.name }
  # The data-storage maximum in bytes, as CloudWatch counts BytesUsedForCache.
  serverless_max_bytes = var.serverless_max_data_gb * 1000000000
}

resource "aws_cloudwatch_metric_alarm" "http_5xx" {
  alarm_name          = "${var.name}-5xx-rate"
  alarm_description   = "More than 5% of requests answered 5xx (targets or load balancer) for 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "100 * (FILL(target5xx, 0) + FILL(lb5xx, 0)) / MAX([requests, 1])"
    label       = "5xx percent"
    return_data = true
  }

  metric_query {
    id = "target5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = local.lb_dimensions
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "lb5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = local.lb_dimensions
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = local.lb_dimensions
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_hosts" {
  alarm_name          = "${var.name}-unhealthy-hosts"
  alarm_description   = "A target has failed /health for 3 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = local.tg_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "ecs_cpu" {
  alarm_name          = "${var.name}-ecs-cpu"
  alarm_description   = "Service CPU above 85% for 10 minutes (scaling has not kept up)."
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = local.ecs_dimensions
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 85
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "ecs_memory" {
  alarm_name          = "${var.name}-ecs-memory"
  alarm_description   = "Service memory above 85% of its reservation for 10 minutes."
  namespace           = "AWS/ECS"
  metric_name         = "MemoryUtilization"
  dimensions          = local.ecs_dimensions
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 85
  alarm_actions       = local.alarm_actions
}

# Memory of the fullest node, as ElastiCache counts it (used memory against maxmemory, which
# leaves out the reserved memory). At 80% it is time to size up; at 90% the service begins to
# refuse new names (its default STORE_NEW_NAMES_MAX_MEMORY_PERCENT), and at 100% Redis refuses
# writes (noeviction, redis.tf): that pages.
resource "aws_cloudwatch_metric_alarm" "redis_memory_warn" {
  count               = local.redis_node_count > 0 ? 1 : 0
  alarm_name          = "${var.name}-redis-memory-warn"
  alarm_description   = "A Redis node above 80% of its memory for 5 minutes: size the node up (redis_node_type) before new names are refused."
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  alarm_actions       = local.notice_actions
  ok_actions          = local.notice_actions

  metric_query {
    id          = "worst"
    expression  = "MAX([${join(",", [for i in range(local.redis_node_count) : "n${i}"])}])"
    label       = "largest node's memory %"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = range(local.redis_node_count)
    content {
      id = "n${metric_query.value}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "DatabaseMemoryUsagePercentage"
        dimensions  = { CacheClusterId = local.redis_clusters[metric_query.value] }
        period      = 60
        stat        = "Maximum"
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "redis_memory_page" {
  count               = local.redis_node_count > 0 ? 1 : 0
  alarm_name          = "${var.name}-redis-memory-page"
  alarm_description   = "A Redis node above 90% of its memory for 3 minutes: new names are being refused, and at 100% every greeting fails. Size up now (redis_node_type)."
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 90
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "worst"
    expression  = "MAX([${join(",", [for i in range(local.redis_node_count) : "n${i}"])}])"
    label       = "largest node's memory %"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = range(local.redis_node_count)
    content {
      id = "n${metric_query.value}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "DatabaseMemoryUsagePercentage"
        dimensions  = { CacheClusterId = local.redis_clusters[metric_query.value] }
        period      = 60
        stat        = "Maximum"
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "redis_cpu" {
  count               = local.redis_node_count > 0 ? 1 : 0
  alarm_name          = "${var.name}-redis-cpu"
  alarm_description   = "Redis engine CPU above 80% on a node for 10 minutes (Redis is single-threaded)."
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  alarm_actions       = local.alarm_actions

  metric_query {
    id          = "worst"
    expression  = "MAX([${join(",", [for i in range(local.redis_node_count) : "n${i}"])}])"
    label       = "busiest node's engine CPU %"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = range(local.redis_node_count)
    content {
      id = "n${metric_query.value}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "EngineCPUUtilization"
        dimensions  = { CacheClusterId = local.redis_clusters[metric_query.value] }
        period      = 300
        stat        = "Maximum"
      }
    }
  }
}

# The service's own signals, from its embedded-metric lines. A Redis failover costs seconds of
# 503s; three minutes in a row is an outage. Latency: 3 of 5 minutes, so that a log batch that
# arrives late does not decide alone (CloudWatch's advice for alarms on embedded metrics).

resource "aws_cloudwatch_metric_alarm" "store_unavailable" {
  alarm_name          = "${var.name}-store-unavailable"
  alarm_description   = "Requests answered 503 store_unavailable (Redis unreachable) in 3 minutes in a row."
  namespace           = local.emf_namespace
  metric_name         = "StoreUnavailable"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  alarm_name          = "${var.name}-hello-latency-p99"
  alarm_description   = "The slowest task's p99 latency of /hello/{name} above ${var.latency_alarm_ms} ms in 3 of 5 minutes."
  namespace           = local.emf_namespace
  metric_name         = "HelloLatencyP99"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.latency_alarm_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The store's admission (issue 26): past its memory watermark or NAMES_MAX the service refuses
# greetings of new names and keeps counting known ones. Refusals are the guard working, so they
# inform; Redis itself answering -OOM (StoreFull) means greetings of known names fail too, so it
# pages.
resource "aws_cloudwatch_metric_alarm" "names_refused" {
  alarm_name          = "${var.name}-names-refused"
  alarm_description   = "The service refused greetings of new names (the store is full: memory watermark or NAMES_MAX) in the last 5 minutes. Known names still count."
  namespace           = local.emf_namespace
  metric_name         = "NamesRefused"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.notice_actions
  ok_actions          = local.notice_actions
}

resource "aws_cloudwatch_metric_alarm" "store_full" {
  alarm_name          = "${var.name}-store-full"
  alarm_description   = "Redis answered -OOM (out of memory) in 2 of 3 minutes: greetings of known names fail too."
  namespace           = local.emf_namespace
  metric_name         = "StoreFull"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "healthy_hosts" {
  alarm_name          = "${var.name}-healthy-hosts"
  alarm_description   = "Fewer healthy targets than tasks_min (${var.tasks_min}) for 3 minutes: tasks fail to start or to pass /health."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.tg_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = var.tasks_min
  # No data is no healthy target at all.
  treat_missing_data = "breaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
}

# Evictions lose counts. With noeviction (redis.tf) there should never be one: an eviction
# means the parameter group is not the one applied.
resource "aws_cloudwatch_metric_alarm" "redis_evictions" {
  count               = local.redis_node_count > 0 ? 1 : 0
  alarm_name          = "${var.name}-redis-evictions"
  alarm_description   = "Redis evicted keys: memory is full and data is being dropped."
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "worst"
    expression  = "MAX([${join(",", [for i in range(local.redis_node_count) : "n${i}"])}])"
    label       = "evictions on the worst node"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = range(local.redis_node_count)
    content {
      id = "n${metric_query.value}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "Evictions"
        dimensions  = { CacheClusterId = local.redis_clusters[metric_query.value] }
        period      = 300
        stat        = "Sum"
      }
    }
  }
}

# Only replicas publish ReplicationLag, and which node is a replica changes at a failover, so
# the alarm takes the worst of every node; the primary's missing data counts for nothing.
resource "aws_cloudwatch_metric_alarm" "redis_replication_lag" {
  count               = local.redis_replicas > 0 ? 1 : 0
  alarm_name          = "${var.name}-redis-replication-lag"
  alarm_description   = "A Redis replica more than 10 s behind the primary for 5 minutes: a failover now would lose the counts since."
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = 10
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "worst"
    expression  = "MAX([${join(",", [for i in range(local.redis_node_count) : "n${i}"])}])"
    label       = "worst replica's lag (s)"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = range(local.redis_node_count)
    content {
      id = "n${metric_query.value}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = "ReplicationLag"
        dimensions  = { CacheClusterId = local.redis_clusters[metric_query.value] }
        period      = 60
        stat        = "Maximum"
      }
    }
  }
}

# Deployments that ECS gives up on (the circuit breaker or an alarm rolled them back) and tasks
# that cannot start (e.g. an image that is not in ECR): events, not metrics, so EventBridge
# sends them to the alarm topic.
resource "aws_cloudwatch_event_rule" "deployments" {
  name        = "${var.name}-deployment-failures"
  description = "ECS deployments of ${var.name} that failed or rolled back, and tasks that cannot start"
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Deployment State Change", "ECS Service Action"]
    resources     = [aws_ecs_service.main.id]
    detail = {
      eventName = ["SERVICE_DEPLOYMENT_FAILED", "SERVICE_TASK_START_IMPAIRED"]
    }
  })
}

resource "aws_cloudwatch_event_target" "deployments" {
  rule = aws_cloudwatch_event_rule.deployments.name
  arn  = aws_sns_topic.alarms.arn
}

# An event EventBridge could not deliver (a key or topic policy that refuses it) is otherwise
# lost without a trace. This alarm reaches the topic by CloudWatch's own path, which does not
# depend on EventBridge's permissions.
resource "aws_cloudwatch_metric_alarm" "event_delivery" {
  alarm_name          = "${var.name}-event-delivery-failed"
  alarm_description   = "EventBridge could not deliver an ECS deployment or task event to the alarm topic (rule ${aws_cloudwatch_event_rule.deployments.name}): check the topic's and the key's policies."
  namespace           = "AWS/Events"
  metric_name         = "FailedInvocations"
  dimensions          = { RuleName = aws_cloudwatch_event_rule.deployments.name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The alarm topic's policy: the account's own alarms, and EventBridge for the rule above only.
data "aws_iam_policy_document" "alarm_topic" {
  statement {
    sid       = "ThisAccountPublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceOwner"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "DeploymentEvents"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.deployments.arn]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarm_topic.json
}

# The notice topic: this account's alarms and ElastiCache, which requires the
# AWS:SourceOwner condition key (with aws:SourceAccount, SNS's default for new topics, its
# notifications are refused).
data "aws_iam_policy_document" "notice_topic" {
  statement {
    sid       = "ThisAccountPublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.notices.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceOwner"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "notices" {
  arn    = aws_sns_topic.notices.arn
  policy = data.aws_iam_policy_document.notice_topic.json
}

# Stacks applied before the store was a choice had one of each node alarm.
moved {
  from = aws_cloudwatch_metric_alarm.redis_memory_warn
  to   = aws_cloudwatch_metric_alarm.redis_memory_warn[0]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_memory_page
  to   = aws_cloudwatch_metric_alarm.redis_memory_page[0]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_cpu
  to   = aws_cloudwatch_metric_alarm.redis_cpu[0]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_evictions
  to   = aws_cloudwatch_metric_alarm.redis_evictions[0]
}

# ElastiCache Serverless has no nodes: what it publishes is the cache's (dimension clusterId).
# Its data against its data-storage maximum stands for the nodes' memory: warn at 80%, page at
# 90%, where the service refuses new names (and at 100% every write fails). Throttled commands
# mean it scaled slower than the load, or hit serverless_max_ecpu_per_second: greetings fail
# with 503s.
resource "aws_cloudwatch_metric_alarm" "serverless_data_warn" {
  count               = local.store_serverless ? 1 : 0
  alarm_name          = "${var.name}-serverless-data-warn"
  alarm_description   = "The serverless cache holds more than 80% of serverless_max_data_gb for 5 minutes: raise it before new names are refused."
  namespace           = "AWS/ElastiCache"
  metric_name         = "BytesUsedForCache"
  dimensions          = local.serverless_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.serverless_max_bytes * 0.8
  alarm_actions       = local.notice_actions
  ok_actions          = local.notice_actions
}

resource "aws_cloudwatch_metric_alarm" "serverless_data_page" {
  count               = local.store_serverless ? 1 : 0
  alarm_name          = "${var.name}-serverless-data-page"
  alarm_description   = "The serverless cache holds more than 90% of serverless_max_data_gb for 3 minutes: new names are being refused, and at 100% every greeting fails. Raise serverless_max_data_gb now."
  namespace           = "AWS/ElastiCache"
  metric_name         = "BytesUsedForCache"
  dimensions          = local.serverless_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.serverless_max_bytes * 0.9
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "serverless_throttled" {
  count               = local.store_serverless ? 1 : 0
  alarm_name          = "${var.name}-serverless-throttled"
  alarm_description   = "The serverless cache throttled commands in 3 minutes in a row: it is at serverless_max_ecpu_per_second, or scaling more slowly than the load grows."
  namespace           = "AWS/ElastiCache"
  metric_name         = "ThrottledCmds"
  dimensions          = local.serverless_dimensions
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "serverless_ecpu" {
  count               = local.store_serverless ? 1 : 0
  alarm_name          = "${var.name}-serverless-ecpu"
  alarm_description   = "The serverless cache used more than 80% of serverless_max_ecpu_per_second over 10 minutes: raise it before commands are throttled."
  namespace           = "AWS/ElastiCache"
  metric_name         = "ElastiCacheProcessingUnits"
  dimensions          = local.serverless_dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  # ECPUs in a 5-minute period at 80% of the per-second maximum.
  threshold          = var.serverless_max_ecpu_per_second * 300 * 0.8
  treat_missing_data = "notBreaching"
  alarm_actions      = local.notice_actions
  ok_actions         = local.notice_actions
}

module "dashboard" {
  source           = "./dashboard"
  region           = var.region
  load_balancer    = aws_lb.main.arn_suffix
  ecs_cluster      = aws_ecs_cluster.main.name
  ecs_service      = aws_ecs_service.main.name
  redis_clusters   = local.redis_clusters
  serverless_cache = local.store_serverless ? var.name : ""
  namespace        = local.emf_namespace
  alarm_arns = concat([for alarm in [
    aws_cloudwatch_metric_alarm.http_5xx,
    aws_cloudwatch_metric_alarm.unhealthy_hosts,
    aws_cloudwatch_metric_alarm.store_unavailable,
    aws_cloudwatch_metric_alarm.latency_p99,
    aws_cloudwatch_metric_alarm.ecs_cpu,
    aws_cloudwatch_metric_alarm.ecs_memory,
    aws_cloudwatch_metric_alarm.healthy_hosts,
    aws_cloudwatch_metric_alarm.names_refused,
    aws_cloudwatch_metric_alarm.store_full,
    aws_cloudwatch_metric_alarm.event_delivery,
    ] : alarm.arn],
    aws_cloudwatch_metric_alarm.redis_memory_warn[*].arn,
    aws_cloudwatch_metric_alarm.redis_memory_page[*].arn,
    aws_cloudwatch_metric_alarm.redis_cpu[*].arn,
    aws_cloudwatch_metric_alarm.redis_evictions[*].arn,
    aws_cloudwatch_metric_alarm.redis_replication_lag[*].arn,
    aws_cloudwatch_metric_alarm.serverless_data_warn[*].arn,
    aws_cloudwatch_metric_alarm.serverless_data_page[*].arn,
    aws_cloudwatch_metric_alarm.serverless_throttled[*].arn,
    aws_cloudwatch_metric_alarm.serverless_ecpu[*].arn,
  )
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name
  dashboard_body = module.dashboard.body
}
