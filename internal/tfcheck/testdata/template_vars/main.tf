variable "name" {
  type = string
}

locals {
  script = templatefile("${path.module}/script.sh.tftpl", {
    name   = var.name
    unused = "x"
  })
}
