# A VPC across two availability zones: public subnets for the load balancer and the NAT
# gateways, private subnets for the ECS instances and Redis.
#
# Each zone's private subnet leaves through its own zone's NAT gateway, so that a zone's failure
# does not cut the other zone off from ECR, CloudWatch Logs, Secrets Manager, the ECS control
# plane and the ELB/EC2 APIs: without them no new task starts. A second NAT gateway costs about
# $33/month; interface endpoints for the same services (ecr.api, ecr.dkr, logs, secretsmanager,
# ecs, ecs-agent, ecs-telemetry, elasticloadbalancing, ec2, and ssm's three for Session Manager)
# would be about $7.30/month each per zone, over $150/month for two zones. The S3 gateway
# endpoint is free and carries the image layers (ECR stores them in S3) past the NAT gateways'
# data charge.

locals {
  azs          = slice(data.aws_availability_zones.available.names, 0, 2)
  nat_gateways = var.nat_gateway_per_zone ? 2 : 1
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# No rules: nothing may use the default security group.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.main.id
}

resource "aws_subnet" "public" {
  count             = 2
  vpc_id            = aws_vpc.main.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = { Name = "${var.name}-public-${count.index}" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.main.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index + 10)

  tags = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
}

resource "aws_eip" "nat" {
  count  = local.nat_gateways
  domain = "vpc"
}

resource "aws_nat_gateway" "main" {
  count         = local.nat_gateways
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id

  depends_on = [aws_internet_gateway.main]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main.id
  }
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# One route table per zone, each to its zone's NAT gateway (or both to the one, when
# nat_gateway_per_zone is false).
resource "aws_route_table" "private" {
  count  = 2
  vpc_id = aws_vpc.main.id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.main[count.index % local.nat_gateways].id
  }

  tags = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id

  tags = { Name = "${var.name}-s3" }
}

resource "aws_flow_log" "vpc" {
  vpc_id          = aws_vpc.main.id
  traffic_type    = "REJECT"
  log_destination = aws_cloudwatch_log_group.flow.arn
  iam_role_arn    = aws_iam_role.flow_logs.arn
}

# Security groups: the internet reaches only the load balancer; the load balancer reaches only
# the instances' dynamic port range; only the instances reach Redis. No SSH anywhere.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "HTTP(S) from the internet to the load balancer"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  # checkov:skip=CKV_AWS_260:A public web service; port 80 only redirects to HTTPS once a certificate is set.
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from anywhere (redirected to HTTPS when a certificate is set)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  count             = var.certificate_arn == "" ? 0 : 1
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from anywhere"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_instances" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the tasks' dynamic host ports"
  referenced_security_group_id = aws_security_group.instances.id
  ip_protocol                  = "tcp"
  from_port                    = 32768
  to_port                      = 65535
}

resource "aws_security_group" "instances" {
  name        = "${var.name}-instances"
  description = "ECS instances: task ports from the load balancer and from each other"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "instances_from_alb" {
  security_group_id            = aws_security_group.instances.id
  description                  = "Task ports from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = 32768
  to_port                      = 65535
}

resource "aws_vpc_security_group_ingress_rule" "instances_from_peers" {
  security_group_id            = aws_security_group.instances.id
  description                  = "Task ports from the other nodes, for /health/cluster"
  referenced_security_group_id = aws_security_group.instances.id
  ip_protocol                  = "tcp"
  from_port                    = 32768
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "instances_https" {
  security_group_id = aws_security_group.instances.id
  description       = "HTTPS to AWS APIs and ECR (through the NAT gateways, S3 through its endpoint)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "instances_to_peers" {
  security_group_id            = aws_security_group.instances.id
  description                  = "Task ports of the other nodes"
  referenced_security_group_id = aws_security_group.instances.id
  ip_protocol                  = "tcp"
  from_port                    = 32768
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "instances_to_redis" {
  security_group_id            = aws_security_group.instances.id
  description                  = "Redis"
  referenced_security_group_id = aws_security_group.redis.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "Redis, from the ECS instances only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_instances" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the ECS instances"
  referenced_security_group_id = aws_security_group.instances.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

# Stacks applied with one NAT gateway keep it as the first zone's.
moved {
  from = aws_eip.nat
  to   = aws_eip.nat[0]
}

moved {
  from = aws_nat_gateway.main
  to   = aws_nat_gateway.main[0]
}

moved {
  from = aws_route_table.private
  to   = aws_route_table.private[0]
}
