variable "env" {
  type    = string
  default = "prod"
}

locals {
  policy = file("${path.root}/policies/${var.env}.yaml")
  script = templatefile("${path.module}/absent.tftpl", {})
}
