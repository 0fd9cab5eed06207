# Clean: every kind of construct the checks look at, used correctly.
variable "env" {
  type    = string
  default = "prod"
}

variable "region" {
  type = string
}

module "child" {
  source = "./modules/child"
  count  = 1

  name = "app-${var.env}"
}

data "aws_iam_policy_document" "tls_only" {
  # A Deny may use wildcards.
  statement {
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["*"]
  }

  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::bucket/releases/*"]
  }

  dynamic "statement" {
    for_each = ["a"]
    content {
      actions   = ["kms:Sign"]
      resources = [statement.value]
    }
  }
}

locals {
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Deny", Action = "*", Resource = "*" },
      { Effect = "Allow", Action = ["ssm:GetParameter"], Resource = "arn:aws:ssm:*:*:parameter/x/*" },
    ]
  })
  rendered = templatefile("${path.module}/hello.tftpl", { name = var.env, region = var.region })
  config   = file("${path.root}/files/${var.env}.txt")
}

output "child_out" {
  value = module.child[0].out
}

# A refactor's moved block names resource addresses, not outputs.
moved {
  from = module.child.aws_s3_bucket.old
  to   = module.child.aws_s3_bucket.this
}
