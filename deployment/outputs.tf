output "ecr_repository_url" {
  description = "Where releases push images (scripts/deploy.sh reads it)."
  value       = aws_ecr_repository.main.repository_url
}

output "redis_endpoint" {
  description = "Where the tasks reach the store (TLS, port 6379): the replication group's primary endpoint, the cluster's configuration endpoint, or the serverless cache's endpoint."
  value       = local.redis_host
}

output "store" {
  description = "The store in use (var.store) and what the tasks are told of it."
  value = {
    kind                   = var.store
    redis_mode             = local.redis_mode
    redis_wait_replicas    = local.redis_wait_replicas
    redis_data_limit_bytes = local.redis_data_limit_bytes
  }
}

output "service_url" {
  description = "The service, through the load balancer."
  value       = "${var.certificate_arn == "" ? "http" : "https"}://${aws_lb.main.dns_name}"
}

output "plain_http_warning" {
  description = "Set when the service is served over plain HTTP (plain_http = true, no certificate)."
  value       = var.certificate_arn == "" ? "PLAIN HTTP: requests and answers cross the internet unencrypted; set certificate_arn for HTTPS." : null
}

output "cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.main.name
}

output "service_name" {
  description = "ECS service."
  value       = aws_ecs_service.main.name
}

output "task_family" {
  description = "Task definition family; releases register new revisions of it."
  value       = aws_ecs_task_definition.main.family
}

output "log_group" {
  description = "CloudWatch Logs group of the tasks."
  value       = aws_cloudwatch_log_group.service.name
}

output "dashboard_url" {
  description = "The CloudWatch dashboard: traffic, latency, the service's own numbers, ECS, Redis, alarms."
  value       = "https://${var.region}.console.aws.amazon.com/cloudwatch/home?region=${var.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.main.dashboard_name}"
}

output "alarm_topic_arn" {
  description = "SNS topic of what pages: alarms that need someone now, and ECS deployment and task events."
  value       = aws_sns_topic.alarms.arn
}

output "notice_topic_arn" {
  description = "SNS topic of what informs: warnings and ElastiCache's events."
  value       = aws_sns_topic.notices.arn
}

output "deployment_event_rule" {
  description = "EventBridge rule that sends ECS deployment failures and impaired task starts to the alarm topic."
  value       = aws_cloudwatch_event_rule.deployments.name
}

output "architecture" {
  description = "arm64 or x86_64: the binary and image scripts/deploy.sh builds."
  value       = var.architecture
}

output "region" {
  description = "Region of everything above."
  value       = var.region
}
