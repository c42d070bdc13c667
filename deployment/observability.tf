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

# The store's alarms, from the tables in derived.tf (what each watches, when it fires, whom it
# reaches, and why).
resource "aws_cloudwatch_metric_alarm" "redis_node" {
  for_each            = local.redis_node_alarms
  alarm_name          = "${var.name}-redis-${each.key}"
  alarm_description   = each.value.description
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing
  alarm_actions       = each.value.pages ? local.alarm_actions : local.notice_actions
  ok_actions          = each.value.pages ? local.alarm_actions : local.notice_actions

  metric_query {
    id          = "worst"
    expression  = "MAX([${join(",", [for i in range(local.redis_node_count) : "n${i}"])}])"
    label       = each.value.label
    return_data = true
  }

  dynamic "metric_query" {
    for_each = range(local.redis_node_count)
    content {
      id = "n${metric_query.value}"
      metric {
        namespace   = "AWS/ElastiCache"
        metric_name = each.value.metric
        dimensions  = { CacheClusterId = local.redis_clusters[metric_query.value] }
        period      = each.value.period
        stat        = each.value.stat
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "serverless" {
  for_each            = local.serverless_alarms
  alarm_name          = "${var.name}-serverless-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/ElastiCache"
  metric_name         = each.value.metric
  dimensions          = local.serverless_dimensions
  statistic           = each.value.stat
  period              = each.value.period
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing
  alarm_actions       = each.value.pages ? local.alarm_actions : local.notice_actions
  ok_actions          = each.value.pages ? local.alarm_actions : local.notice_actions
}

# The same alarms as they were in state before the tables: one resource each, counted since
# the store was a choice (CPU and evictions had no count before that; their moves chain). An
# alarm left to be destroyed and made again under its own name could delete its replacement.
moved {
  from = aws_cloudwatch_metric_alarm.redis_cpu
  to   = aws_cloudwatch_metric_alarm.redis_cpu[0]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_evictions
  to   = aws_cloudwatch_metric_alarm.redis_evictions[0]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_memory_warn[0]
  to   = aws_cloudwatch_metric_alarm.redis_node["memory-warn"]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_memory_page[0]
  to   = aws_cloudwatch_metric_alarm.redis_node["memory-page"]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_cpu[0]
  to   = aws_cloudwatch_metric_alarm.redis_node["cpu"]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_evictions[0]
  to   = aws_cloudwatch_metric_alarm.redis_node["evictions"]
}

moved {
  from = aws_cloudwatch_metric_alarm.redis_replication_lag[0]
  to   = aws_cloudwatch_metric_alarm.redis_node["replication-lag"]
}

moved {
  from = aws_cloudwatch_metric_alarm.serverless_data_warn[0]
  to   = aws_cloudwatch_metric_alarm.serverless["data-warn"]
}

moved {
  from = aws_cloudwatch_metric_alarm.serverless_data_page[0]
  to   = aws_cloudwatch_metric_alarm.serverless["data-page"]
}

moved {
  from = aws_cloudwatch_metric_alarm.serverless_throttled[0]
  to   = aws_cloudwatch_metric_alarm.serverless["throttled"]
}

moved {
  from = aws_cloudwatch_metric_alarm.serverless_ecpu[0]
  to   = aws_cloudwatch_metric_alarm.serverless["ecpu"]
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
    [for alarm in aws_cloudwatch_metric_alarm.redis_node : alarm.arn],
    [for alarm in aws_cloudwatch_metric_alarm.serverless : alarm.arn],
  )
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name
  dashboard_body = module.dashboard.body
}
