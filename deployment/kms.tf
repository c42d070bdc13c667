# One customer-managed key for everything the service stores at rest: logs, the Redis secret,
# the alarm topic, the image repository and Redis itself (and so its snapshots, the final one
# included: see the README's teardown for the key's deletion window).

resource "aws_kms_key" "main" {
  description         = "${var.name}: logs, secrets, alarms, images, cache"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:The account root must administer its own key policy (AWS's default key policy).
  # checkov:skip=CKV_AWS_111:Same default statement; it is scoped to this key by being its policy.
  # checkov:skip=CKV_AWS_356:"*" in a key policy means this key only.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # Each service only on behalf of this account (a confused deputy elsewhere gets nothing), and
  # CloudWatch Logs only for this account's log groups in this region.
  statement {
    sid       = "LogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }

  # CloudWatch alarms (and SNS itself) carry aws:SourceAccount on their requests.
  statement {
    sid       = "ServicesEncrypt"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com", "cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  # EventBridge does not: AWS documents that aws:SourceAccount, aws:SourceArn and
  # aws:SourceOrgID are absent from its requests to an encrypted topic's key, so a statement
  # conditioned on them silently drops every ECS event. What the request does carry is SNS's
  # encryption context, the topic's ARN: EventBridge may use the key for the alarm topic only.
  # (Built from its name: the topic refers to this key, so its own ARN would be a cycle.)
  statement {
    sid       = "EventBridgeEncrypts"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:sns:topicArn"
      values   = [local.alarm_topic_arn]
    }
  }
}
