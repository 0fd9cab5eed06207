# The release signing key: an asymmetric KMS key (ECDSA P-256, the
# signature cosign and the agent verify). The private half never leaves KMS;
# CI signs through the publisher role, hosts verify with the public half.

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "key" {
  # The account administers the key (through IAM) but cannot sign with it.
  # kms:Get* includes kms:GetPublicKey, which Terraform's aws_kms_public_key
  # below needs; kms:Sign is granted to the publisher role alone.
  statement {
    sid = "AccountAdministersKey"
    actions = [
      "kms:Create*",
      "kms:Describe*",
      "kms:Enable*",
      "kms:List*",
      "kms:Put*",
      "kms:Update*",
      "kms:Revoke*",
      "kms:Disable*",
      "kms:Get*",
      "kms:Delete*",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:ScheduleKeyDeletion",
      "kms:CancelKeyDeletion",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "PublisherSigns"
    actions   = ["kms:Sign"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [var.publisher_role_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:SigningAlgorithm"
      values   = ["ECDSA_SHA_256"]
    }
  }

  # sigstore's KMS signer reads the public key and the key's metadata
  # (DescribeKey) before it signs.
  statement {
    sid       = "PublisherReadsPublicKey"
    actions   = ["kms:GetPublicKey", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [var.publisher_role_arn]
    }
  }
}

resource "aws_kms_key" "signing" {
  description              = "Cohuron release signing (${var.env}): bundles and release manifests"
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = var.deletion_window_days
  policy                   = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "signing" {
  name          = coalesce(var.alias_name, "alias/cohuron-release-signing-${var.env}")
  target_key_id = aws_kms_key.signing.key_id
}

data "aws_kms_public_key" "signing" {
  key_id = aws_kms_key.signing.arn
}
