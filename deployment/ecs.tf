# The ECS cluster on EC2 capacity: an Auto Scaling group of ECS-optimised Amazon Linux 2023
# instances in the private subnets, the service behind the target group with dynamic host
# ports, rolling deployments that roll back on failure, and target-tracking task scaling.

locals {
  instance_type = var.instance_type != "" ? var.instance_type : (local.arm64 ? "t4g.small" : "t3.small")
}

data "aws_ssm_parameter" "ecs_ami" {
  count = local.ecs_ami_from_ssm ? 1 : 0
  name  = local.ami_parameter
}

# What may change the instances' AMI: the architecture and a pinned id. AWS publishes a new
# recommended AMI every few weeks; the launch template ignores that (ignore_changes below), so
# an apply for something else never replaces every instance. A change here replaces the launch
# template, whose new version the Auto Scaling group's instance refresh then rolls out; so does
# `terraform apply -replace=aws_launch_template.ecs`, which takes the recommended AMI of the day.
resource "terraform_data" "ecs_ami" {
  triggers_replace = [var.architecture, var.ecs_ami_id]
}

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_launch_template" "ecs" {
  name_prefix   = "${var.name}-"
  image_id      = local.ecs_ami_from_ssm ? one(data.aws_ssm_parameter.ecs_ami[*].value) : var.ecs_ami_id
  instance_type = local.instance_type

  iam_instance_profile {
    arn = aws_iam_instance_profile.ecs_instance.arn
  }

  vpc_security_group_ids = [aws_security_group.instances.id]

  # IMDSv2 only, with hop limit 1: a bridge-mode container is one hop further, so its token
  # request's answer never reaches it, and without a token (IMDSv1 is off) it gets nothing. The
  # instance profile's credentials (the ECS agent's role) stay out of every container's reach;
  # tasks use their own task role, and learn their instance id from ECS instead
  # (ECS_CONTAINER_METADATA_FILE and ecs:DescribeContainerInstances, see iam.tf).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 30
      volume_type = "gp3"
      encrypted   = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.tags
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.tags
  }

  user_data = base64encode(<<-EOT
    #!/bin/bash
    echo "ECS_CLUSTER=${var.name}" >> /etc/ecs/ecs.config
    # The file that names the container instance to each task (its instance id comes from it).
    echo "ECS_ENABLE_CONTAINER_METADATA=true" >> /etc/ecs/ecs.config
  EOT
  )

  # The Auto Scaling group refers to the template by id: the new one must exist before the old
  # one goes.
  lifecycle {
    create_before_destroy = true
    ignore_changes        = [image_id]
    replace_triggered_by  = [terraform_data.ecs_ami]
  }
}

resource "aws_autoscaling_group" "ecs" {
  name_prefix           = "${var.name}-"
  min_size              = var.instances_min
  max_size              = var.instances_max
  vpc_zone_identifier   = aws_subnet.private[*].id
  protect_from_scale_in = true
  health_check_type     = "EC2"

  # The version by number, not "$Latest": a new launch template (a new architecture or AMI, see
  # terraform_data.ecs_ami) changes this group and starts the refresh below.
  launch_template {
    id      = aws_launch_template.ecs.id
    version = aws_launch_template.ecs.latest_version
  }

  # Rolling replacement of every instance when the launch template changes: a new instance
  # first (up to 200%), the old one drained by ECS (managed_draining below) and then ended.
  # Instances are protected from scale-in for ECS's managed termination, so the refresh is told
  # to replace them anyway.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage       = 100
      max_healthy_percentage       = 200
      instance_warmup              = 120
      skip_matching                = true
      scale_in_protected_instances = "Refresh"
      standby_instances            = "Terminate"
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-ecs"
    propagate_at_launch = true
  }
}

resource "aws_ecs_capacity_provider" "main" {
  name = var.name

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.ecs.arn
    managed_termination_protection = "ENABLED"
    # ECS moves the tasks off an instance that Auto Scaling ends (a refresh, a scale-in).
    managed_draining = "ENABLED"

    managed_scaling {
      status          = "ENABLED"
      target_capacity = 100
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = [aws_ecs_capacity_provider.main.name]

  default_capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.main.name
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "main" {
  family                   = var.name
  requires_compatibilities = ["EC2"]
  network_mode             = "bridge"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  # ECS places the task only on instances of this architecture; the image must be built for it.
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = local.arm64 ? "ARM64" : "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = var.name
    image                  = "${aws_ecr_repository.main.repository_url}:${var.image_tag}"
    essential              = true
    cpu                    = var.task_cpu
    memory                 = var.task_memory
    readonlyRootFilesystem = true
    user                   = "65534:65534"
    stopTimeout            = 30
    portMappings           = [{ containerPort = var.container_port, hostPort = 0, protocol = "tcp" }]
    # A descriptor per connection: without this the task gets the Docker daemon's default,
    # which can be below HTTP_MAX_CONNECTIONS, and connections past it fail at accept.
    ulimits = [{ name = "nofile", softLimit = local.nofile, hardLimit = local.nofile }]
    environment = [
      { name = "PORT", value = tostring(var.container_port) },
      { name = "HTTP_MAX_CONNECTIONS", value = tostring(var.http_max_connections) },
      # Longer than the load balancer's idle_timeout (a validation in variables.tf), so that the
      # load balancer closes idle connections first.
      { name = "HTTP_IDLE_TIMEOUT_MS", value = tostring(local.service_idle_timeout_ms) },
      { name = "TARGET_GROUP_ARN", value = aws_lb_target_group.main.arn },
      { name = "AWS_REGION", value = var.region },
      { name = "LOG_FORMAT", value = "json" },
      { name = "METRICS_EMF", value = "true" },
      { name = "METRICS_EMF_NAMESPACE", value = local.emf_namespace },
      # The store (redis.tf): its mode said rather than asked, and the replicas a greeting's
      # 200 waits for (derived.tf says which and why).
      { name = "REDIS_MODE", value = local.redis_mode },
      { name = "REDIS_WAIT_REPLICAS", value = tostring(local.redis_wait_replicas) },
      # Serverless states no maxmemory: new names stop at the watermark of its data limit. Empty
      # (unset, to the service) for the node-based stores, whose maxmemory Redis states.
      { name = "REDIS_DATA_LIMIT_BYTES", value = local.redis_data_limit_bytes == null ? "" : format("%d", local.redis_data_limit_bytes) },
    ]
    secrets = [{ name = "REDIS_URL", valueFrom = aws_secretsmanager_secret.redis_url.arn }]
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/hello", "healthcheck"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 5
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service.name
        awslogs-region        = var.region
        awslogs-stream-prefix = var.name
      }
    }
  }])
}

resource "aws_ecs_service" "main" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.main.arn
  desired_count                      = var.tasks_desired
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  # Tasks carry the service's tags (default_tags), for cost allocation.
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.main.name
    weight            = 1
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # The circuit breaker sees only failed health checks, and /health answers 200 while Redis is
  # down (liveness: a Redis outage must not kill every task). A release that breaks Redis access
  # or answers 5xx is caught by these alarms instead: ECS watches them during the deployment
  # and its bake time and rolls back when one goes into ALARM.
  alarms {
    enable      = true
    rollback    = true
    alarm_names = [aws_cloudwatch_metric_alarm.http_5xx.alarm_name, aws_cloudwatch_metric_alarm.store_unavailable.alarm_name]
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.main.arn
    container_name   = var.name
    container_port   = var.container_port
  }

  ordered_placement_strategy {
    type  = "spread"
    field = "attribute:ecs.availability-zone"
  }

  # Releases (scripts/deploy.sh) move the task definition and autoscaling moves the count.
  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  # Every listener that forwards to the target group: ECS refuses a target group that no load
  # balancer uses yet ("does not have an associated load balancer"), and with a certificate the
  # HTTP listener only redirects, so the HTTPS one is what associates it.
  depends_on = [aws_lb_listener.http, aws_lb_listener.https, aws_ecs_cluster_capacity_providers.main]
}

resource "aws_appautoscaling_target" "service" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.main.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.tasks_min
  max_capacity       = var.tasks_max
}

resource "aws_appautoscaling_policy" "requests" {
  name               = "${var.name}-requests-per-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = var.requests_per_task_target
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.main.arn_suffix}/${aws_lb_target_group.main.arn_suffix}"
    }
  }
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service.service_namespace
  resource_id        = aws_appautoscaling_target.service.resource_id
  scalable_dimension = aws_appautoscaling_target.service.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
