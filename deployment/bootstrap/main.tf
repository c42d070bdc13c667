# Run once per account and region, before deployment/ itself: the S3 bucket that keeps
# deployment/'s Terraform state (which holds the Redis AUTH token), and the KMS key that
# encrypts it. Versioned, so a bad write can be undone; public access blocked; TLS only.
#
#   cd deployment/bootstrap
#   terraform init && terraform apply -var region=us-east-1
#   terraform output -raw backend_config > ../backend.hcl
#   cd .. && terraform init -backend-config=backend.hcl
#
# This configuration's own state is local and holds no secret (a bucket name and a key ARN);
# keep it, or import the two resources again if it is lost. backend.hcl is not committed.

terraform {
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 7.0"
    }
  }
}

variable "region" {
  description = "Region of the state bucket; the same as deployment/'s region is simplest."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix, as deployment/'s name."
  type        = string
  default     = "hello"
}

variable "noncurrent_days" {
  description = "Days an overwritten state version is kept (to undo a bad apply)."
  type        = number
  default     = 90
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Service   = var.name
      ManagedBy = "terraform"
    }
  }
}

data "aws_caller_identity" "current" {}

locals {
  account = data.aws_caller_identity.current.account_id
  # Bucket names are global: the account and region make this one unique.
  bucket = "${var.name}-tfstate-${local.account}-${var.region}"
}

resource "aws_kms_key" "state" {
  description         = "${var.name}: Terraform state"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "state" {
  name          = "alias/${var.name}-tfstate"
  target_key_id = aws_kms_key.state.key_id
}

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_109:The account root must administer its own key policy (AWS's default key policy); IAM policies then decide who may use it.
  # checkov:skip=CKV_AWS_111:Same default statement; it is scoped to this key by being its policy.
  # checkov:skip=CKV_AWS_356:"*" in a key policy means this key only.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${local.account}:root"]
    }
  }
}

resource "aws_s3_bucket" "state" {
  # checkov:skip=CKV_AWS_18:Server access logs would need a second bucket for a bucket that Terraform alone reads and writes; CloudTrail records its API calls.
  # checkov:skip=CKV_AWS_144:Cross-region replication doubles the cost for a file that versioning already protects and that `terraform apply` can rebuild from the real resources (import).
  # checkov:skip=CKV2_AWS_62:Nobody acts on events of a state bucket.
  bucket = local.bucket

  # The state of a running stack: destroying it by accident would orphan every resource.
  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.state.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.state]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.state.arn,
      "${aws_s3_bucket.state.arn}/*",
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

resource "aws_s3_bucket_policy" "state" {
  bucket = aws_s3_bucket.state.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.state]
}

output "bucket" {
  description = "The state bucket."
  value       = aws_s3_bucket.state.id
}

output "backend_config" {
  description = "deployment/'s backend settings: save as deployment/backend.hcl for `terraform init -backend-config=backend.hcl`."
  value       = <<-EOT
    bucket     = "${aws_s3_bucket.state.id}"
    region     = "${var.region}"
    kms_key_id = "${aws_kms_key.state.arn}"
  EOT
}
