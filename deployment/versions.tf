terraform {
  # 1.10: the S3 backend locks with a lock object of its own (use_lockfile), no DynamoDB table.
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.90: ElastiCache users and user groups for the Valkey engine (serverless, redis.tf),
      # added early in 2025; 5.80 and 5.8x refuse engine = "valkey" there.
      version = ">= 5.90, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # State holds the Redis AUTH token and the rediss:// URL, so it lives in an encrypted,
  # versioned S3 bucket (made once by deployment/bootstrap/) and is locked while a run writes it.
  # Partial configuration: the bucket and its region come from `terraform init
  # -backend-config=backend.hcl` (the bootstrap prints that file), so no account's names are
  # committed here.
  backend "s3" {
    key          = "hello/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

data "aws_caller_identity" "current" {}

locals {
  # Every resource's tags (the provider's default_tags), and the tags given by hand where AWS
  # creates resources itself: the instances and volumes Auto Scaling launches and the tasks ECS
  # starts, which default_tags never reach.
  tags = {
    Service   = var.name
    ManagedBy = "terraform"
  }
}

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394:Only the first two zones are used, and the subnets pin them once created.
  state = "available"
}
