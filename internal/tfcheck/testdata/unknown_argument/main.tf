module "child" {
  source = "./child"

  name  = "x"
  sizes = 2
}
