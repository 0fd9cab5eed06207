# A records: one per host (<host>.<domain_name>, for operators and health
# checks) and, optionally, the app's name with every host's address.

resource "aws_route53_record" "host" {
  for_each = var.hosts

  zone_id = var.zone_id
  name    = "${each.key}.${var.domain_name}"
  type    = "A"
  ttl     = var.ttl
  records = [each.value]
}

resource "aws_route53_record" "app" {
  count = var.create_app_record ? 1 : 0

  zone_id = var.zone_id
  name    = var.domain_name
  type    = "A"
  ttl     = var.ttl
  records = values(var.hosts)
}
