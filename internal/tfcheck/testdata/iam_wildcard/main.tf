data "aws_iam_policy_document" "bad" {
  statement {
    actions   = ["s3:GetObject", "s3:*"]
    resources = ["arn:aws:s3:::bucket/*"]
  }

  statement {
    effect      = "Allow"
    not_actions = ["iam:CreateUser"]
    resources   = ["arn:aws:iam::123456789012:user/x"]
  }

  statement {
    actions = ["s3:GetObject"]
    resources = [
      "*",
    ]
  }

  dynamic "statement" {
    for_each = ["x"]
    content {
      actions   = ["*"]
      resources = [statement.value]
    }
  }

  statement {
    effect    = "Deny"
    actions   = ["*"]
    resources = ["*"]
  }
}

locals {
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["kms:*"]
        Resource = "arn:aws:kms:us-east-1:123456789012:key/x"
      },
      {
        Action   = "*"
        Resource = "arn:aws:s3:::bucket"
      },
      {
        Effect    = "Allow"
        NotAction = "s3:DeleteObject"
        Resource  = "arn:aws:s3:::bucket/*"
      },
      {
        Effect   = "Allow"
        Action   = "s3:ListBucket"
        Resource = "*"
      },
      {
        Effect   = "Deny"
        Action   = "s3:*"
        Resource = "*"
      },
    ]
  })
}
