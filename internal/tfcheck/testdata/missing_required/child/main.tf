variable "name" {
  type = string
}

variable "size" {
  type    = number
  default = 1
}

output "out" {
  value = "${var.name}-${var.size}"
}
