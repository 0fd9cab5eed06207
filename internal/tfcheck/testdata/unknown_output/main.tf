module "child" {
  source = "./child"
  name   = "x"
}

output "ok" {
  value = module.child.out
}

output "typo" {
  value = module.child.outs
}

output "not_called" {
  value = module.other.out
}
