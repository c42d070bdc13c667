# The public Application Load Balancer. Health checks ask /health, which answers 200 while the
# process serves (even with Redis down, which /health reports instead).

resource "aws_lb" "main" {
  # checkov:skip=CKV2_AWS_76:Log4j is covered by AWSManagedRulesKnownBadInputsRuleSet (waf.tf); the check also wants AWSManagedRulesAnonymousIpList, which would block every client behind a VPN or on a cloud host, a product decision.
  # checkov:skip=CKV2_AWS_20:HTTP redirects to HTTPS whenever certificate_arn is set (see the http listener).
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  # Shorter than the service's keep-alive idle time (HTTP_IDLE_TIMEOUT_MS, same variable).
  idle_timeout = var.idle_timeouts.load_balancer

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.access_logs]
}

# The load balancer's access logs: every request with its client, timing, status and
# X-Amzn-Trace-Id (which the service's access line carries too). Elastic Load Balancing writes
# them only with SSE-S3, not a customer key, and only when this policy lets it.
resource "aws_s3_bucket" "access_logs" {
  # checkov:skip=CKV_AWS_145:ALB access logs support only SSE-S3 (AES256) at the destination, not SSE-KMS.
  # checkov:skip=CKV_AWS_18:Server access logs of an access-log bucket would need a third bucket; CloudTrail records its API calls.
  # checkov:skip=CKV_AWS_144:Logs kept access_log_days in one region; replication would double their cost.
  # checkov:skip=CKV2_AWS_62:Nothing acts on a new log object; Athena reads them when asked.
  # checkov:skip=CKV_AWS_21:Objects are written once by the load balancer and expire by lifecycle; versions would only keep deleted logs.
  bucket_prefix = "${var.name}-alb-logs-"
  force_destroy = !var.deletion_protection
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire"
    status = "Enabled"
    filter {}

    expiration {
      days = var.access_log_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# Regions opened before August 2022 deliver from an Elastic Load Balancing account of the
# region, the others from the log-delivery service principal (local.elb_log_account, in
# derived.tf). aws_elb_service_account knows only the former and fails a plan anywhere else, so
# it is read only there. The principal is allowed everywhere. Each only into this stack's
# prefix and this account's folder.
data "aws_elb_service_account" "main" {
  count = local.elb_log_account ? 1 : 0
}

data "aws_iam_policy_document" "access_logs" {
  dynamic "statement" {
    for_each = data.aws_elb_service_account.main[*].arn
    content {
      sid       = "LoadBalancerWrites"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

      principals {
        type        = "AWS"
        identifiers = [statement.value]
      }
    }
  }

  statement {
    sid       = "LogDeliveryWrites"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.access_logs.arn,
      "${aws_s3_bucket.access_logs.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

resource "aws_lb_target_group" "main" {
  # checkov:skip=CKV_AWS_378:Load balancer to task traffic stays inside the VPC, between security groups that admit only each other.
  name                 = var.name
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "instance"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 15

  health_check {
    path                = "/health"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "http" {
  # checkov:skip=CKV_AWS_2:Plain HTTP is served only when no certificate is given; with one it redirects.
  # checkov:skip=CKV_AWS_103:TLS policy applies to the HTTPS listener, set there.
  # checkov:skip=CKV2_AWS_20:Redirects to HTTPS whenever a certificate is given.
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = var.certificate_arn == "" ? "forward" : "redirect"
    target_group_arn = var.certificate_arn == "" ? aws_lb_target_group.main.arn : null

    dynamic "redirect" {
      for_each = var.certificate_arn == "" ? [] : [1]
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = var.certificate_arn == "" ? 0 : 1
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.main.arn
  }
}

# /metrics and /health/cluster show the service's insides (request and error counts, every
# node's private address, instance id and resources), and one request to /health/cluster makes
# a node ask every other one. The load balancer answers them itself, with the service's own
# 404, unless the client's address is in private_paths_allowed_cidrs (default: nobody). The
# target group's health check asks /health directly, past these rules; nodes ask each other's
# /health directly too. Inside the VPC, scrape the tasks themselves (see the README).
locals {
  private_paths = ["/metrics", "/health/cluster"]
  # The listeners that forward to the tasks: HTTP without a certificate; with one, HTTPS (HTTP
  # then only redirects to it).
  forwarding_listeners = var.certificate_arn == "" ? tomap({ http = aws_lb_listener.http.arn }) : tomap({ https = one(aws_lb_listener.https[*].arn) })
  private_path_rules = {
    for pair in setproduct(keys(local.forwarding_listeners), range(length(local.private_paths))) :
    "${pair[0]} ${local.private_paths[pair[1]]}" => { listener = pair[0], index = pair[1], path = local.private_paths[pair[1]] }
  }
}

resource "aws_lb_listener_rule" "private_path_allowed" {
  for_each     = length(var.private_paths_allowed_cidrs) == 0 ? {} : local.private_path_rules
  listener_arn = local.forwarding_listeners[each.value.listener]
  priority     = 10 + each.value.index

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.main.arn
  }

  condition {
    path_pattern {
      values = [each.value.path]
    }
  }

  condition {
    source_ip {
      values = var.private_paths_allowed_cidrs
    }
  }
}

resource "aws_lb_listener_rule" "private_path_hidden" {
  for_each     = local.private_path_rules
  listener_arn = local.forwarding_listeners[each.value.listener]
  priority     = 20 + each.value.index

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = jsonencode({ error = { status = 404, code = "not_found", message = "no route for ${each.value.path}" } })
    }
  }

  condition {
    path_pattern {
      values = [each.value.path]
    }
  }
}
