# GitHub Actions authenticates with OIDC: no long-lived AWS keys in GitHub.
# - publisher: main of the ops repository (manifest changes) and of the app
#   repository (new bundles) upload bundles and releases and sign with KMS.
# - preview: pull requests of the ops repository read releases, bundles and
#   status and the signing key's public half (publisher preview: what a
#   manifest change would do); they cannot write or sign.
# A workflow job that uses a GitHub environment gets the subject
# repo:OWNER/NAME:environment:ENV instead: add it here if you use one.

locals {
  issuer       = "token.actions.githubusercontent.com"
  provider_arn = var.oidc_provider_arn != null ? var.oidc_provider_arn : one(aws_iam_openid_connect_provider.github[*].arn)
  store        = "${var.code_bucket_arn}/${var.store_prefix}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.oidc_provider_arn == null ? 1 : 0

  url            = "https://${local.issuer}"
  client_id_list = ["sts.amazonaws.com"]
  # AWS validates GitHub's certificate against its own trust store; the
  # provider still requires a thumbprint list (GitHub's published ones).
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]
}

# --- publisher ---------------------------------------------------------------

data "aws_iam_policy_document" "publisher_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values = [
        "repo:${var.github_ops_repo}:ref:refs/heads/main",
        "repo:${var.github_app_repo}:ref:refs/heads/main",
      ]
    }
  }
}

resource "aws_iam_role" "publisher" {
  name                 = "${var.name}-publisher"
  description          = "GitHub Actions on main: publish signed bundles and releases to the store"
  assume_role_policy   = data.aws_iam_policy_document.publisher_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "publisher" {
  statement {
    sid     = "WriteBundlesAndReleases"
    actions = ["s3:GetObject", "s3:PutObject"]
    resources = [
      "${local.store}/bundles/*",
      "${local.store}/releases/*",
    ]
  }

  # Listing finds the next seq and the current bundle.
  statement {
    sid       = "ListBundlesAndReleases"
    actions   = ["s3:ListBucket"]
    resources = [var.code_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        "${var.store_prefix}/releases/*",
        "${var.store_prefix}/bundles/*",
      ]
    }
  }

  statement {
    sid       = "SignReleases"
    actions   = ["kms:Sign", "kms:GetPublicKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "publisher" {
  name   = "publish"
  role   = aws_iam_role.publisher.id
  policy = data.aws_iam_policy_document.publisher.json
}

# --- preview -------------------------------------------------------------------

data "aws_iam_policy_document" "preview_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["repo:${var.github_ops_repo}:pull_request"]
    }
  }
}

resource "aws_iam_role" "preview" {
  name                 = "${var.name}-preview"
  description          = "GitHub Actions in pull requests of the ops repository: read releases and status"
  assume_role_policy   = data.aws_iam_policy_document.preview_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "preview" {
  # publisher preview verifies the current release and indexes the bundle
  # it keeps (the inputs of each converge step), then reads host status.
  statement {
    sid     = "ReadReleasesBundlesAndStatus"
    actions = ["s3:GetObject"]
    resources = [
      "${local.store}/releases/*",
      "${local.store}/bundles/*",
      "${local.store}/status/*",
    ]
  }

  # The public half of the signing key verifies the current release; the
  # preview role cannot sign.
  statement {
    sid       = "VerifyWithSigningKey"
    actions   = ["kms:GetPublicKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "ListReleasesAndStatus"
    actions   = ["s3:ListBucket"]
    resources = [var.code_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        "${var.store_prefix}/releases/*",
        "${var.store_prefix}/status/*",
      ]
    }
  }
}

resource "aws_iam_role_policy" "preview" {
  name   = "preview"
  role   = aws_iam_role.preview.id
  policy = data.aws_iam_policy_document.preview.json
}
