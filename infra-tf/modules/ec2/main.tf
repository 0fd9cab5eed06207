# The hosts: one EC2 instance per host, each with its own role (so an agent
# can write only its own status object), the agent installed by user data,
# no SSH (no key pair, no port 22: Session Manager), IMDSv2 only, an
# encrypted root volume and an Elastic IP.

data "aws_caller_identity" "current" {}

# Debian 13: docker.io, docker-compose (v2), Node.js 20, npm and awscli
# (v2) all come from the distribution.
data "aws_ami" "debian" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  owners      = ["136693071363"] # Debian's official AWS account

  filter {
    name   = "name"
    values = ["debian-13-amd64-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  ami_id     = var.ami_id != null ? var.ami_id : one(data.aws_ami.debian[*].id)
  store      = "${var.code_bucket_arn}/${var.store_prefix}"

  # The instance's name is the agent's hostId and names its status object.
  host_ids = [for i in range(var.host_count) : "${var.env}-${i + 1}"]

  # /etc/cohuron-agent/agent.yaml of each host.
  agent_configs = [for host in local.host_ids : templatefile("${path.module}/agent.yaml.tftpl", {
    store_url = var.store_url
    env       = var.env
    host_id   = host
    region    = var.region
    interval  = var.agent_interval
    jitter    = var.agent_jitter
  })]
}

# --- network -------------------------------------------------------------------

resource "aws_security_group" "host" {
  name_prefix = "${var.name}-host-"
  description = "Cohuron web hosts: web ports in, everything out (packages, S3, SSM, images)"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "web" {
  for_each = { for pair in setproduct(var.ingress_ports, var.ingress_cidrs) : "${pair[0]}-${pair[1]}" => pair }

  security_group_id = aws_security_group.host.id
  description       = "web"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.host.id
  description       = "all outbound"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# --- IAM: one role per host ------------------------------------------------

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "agent" {
  count = var.host_count

  name               = "${var.name}-agent-${count.index + 1}"
  description        = "Cohuron deploy agent on ${local.host_ids[count.index]}"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_instance_profile" "agent" {
  count = var.host_count

  name = aws_iam_role.agent[count.index].name
  role = aws_iam_role.agent[count.index].name
}

data "aws_iam_policy_document" "agent" {
  count = var.host_count

  # Releases of this environment only; bundles are shared by environments.
  statement {
    sid     = "ReadBundlesAndReleases"
    actions = ["s3:GetObject"]
    resources = [
      "${local.store}/bundles/*",
      "${local.store}/releases/${var.env}/*",
    ]
  }

  statement {
    sid       = "ListReleases"
    actions   = ["s3:ListBucket"]
    resources = [var.code_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.store_prefix}/releases/${var.env}/*"]
    }
  }

  statement {
    sid       = "WriteOwnStatus"
    actions   = ["s3:PutObject"]
    resources = ["${local.store}/status/${var.env}/${local.host_ids[count.index]}.json"]
  }

  statement {
    sid       = "ReadAgentBinary"
    actions   = ["s3:GetObject"]
    resources = ["${var.artifacts_bucket_arn}/${var.agent_binary_key}"]
  }

  # Secret references ({ssm: /cohuron/<env>/NAME}) resolved on the host.
  statement {
    sid       = "ReadSecrets"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = ["arn:aws:ssm:${var.region}:${local.account_id}:parameter${var.ssm_parameter_prefix}*"]
  }

  # SecureString parameters are encrypted with the AWS managed key aws/ssm.
  # That key only exists once the account's first SecureString does, so it
  # cannot be looked up here: the grant covers the account's keys, but only
  # through SSM and only for this environment's parameters (SSM sets the
  # parameter's ARN as encryption context).
  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = ["arn:aws:kms:${var.region}:${local.account_id}:key/*"]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:PARAMETER_ARN"
      values   = ["arn:aws:ssm:${var.region}:${local.account_id}:parameter${var.ssm_parameter_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "agent" {
  count = var.host_count

  name   = "cohuron-agent"
  role   = aws_iam_role.agent[count.index].id
  policy = data.aws_iam_policy_document.agent[count.index].json
}

# Session Manager instead of SSH. Not AmazonSSMManagedInstanceCore: that
# managed policy also allows ssm:GetParameter on every parameter.
data "aws_iam_policy_document" "session_manager" {
  statement {
    sid = "SessionManager"
    actions = [
      "ssm:UpdateInstanceInformation",
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
      "ec2messages:AcknowledgeMessage",
      "ec2messages:DeleteMessage",
      "ec2messages:FailMessage",
      "ec2messages:GetEndpoint",
      "ec2messages:GetMessages",
      "ec2messages:SendReply",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "session_manager" {
  count = var.host_count

  name   = "session-manager"
  role   = aws_iam_role.agent[count.index].id
  policy = data.aws_iam_policy_document.session_manager.json
}

# --- instances -------------------------------------------------------------------

resource "aws_instance" "host" {
  count = var.host_count

  ami                         = local.ami_id
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_ids[count.index % length(var.subnet_ids)]
  vpc_security_group_ids      = [aws_security_group.host.id]
  iam_instance_profile        = aws_iam_instance_profile.agent[count.index].name
  associate_public_ip_address = true # egress at first boot, before the Elastic IP is attached
  disable_api_termination     = var.termination_protection

  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    host_id             = local.host_ids[count.index]
    env                 = var.env
    region              = var.region
    artifacts_bucket    = var.artifacts_bucket
    agent_binary_key    = var.agent_binary_key
    agent_binary_sha256 = var.agent_binary_sha256
    app_user            = var.app_user
    npm_packages        = join(" ", var.npm_global_packages)
    agent_config        = chomp(local.agent_configs[count.index])
    trust_policy        = chomp(var.trust_policy_yaml)
    signing_public_key  = chomp(var.signing_public_key)
    agent_unit          = chomp(var.agent_unit)
  })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # containers cannot reach the instance's credentials
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name              = local.host_ids[count.index]
    "cohuron:host-id" = local.host_ids[count.index]
    "cohuron:env"     = var.env
  }

  # User data runs once, at the first boot, and a host holds state (the
  # Compose volumes, its releases): a new AMI or new user data (agent
  # version, trust policy) must not replace or restart a running host behind
  # the operator's back. README.md, "Updating hosts", says how to roll them out.
  lifecycle {
    ignore_changes = [ami, user_data]
  }
}

resource "aws_eip" "host" {
  count = var.host_count

  domain   = "vpc"
  instance = aws_instance.host[count.index].id

  tags = { Name = local.host_ids[count.index] }
}
