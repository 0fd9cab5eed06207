// Package tfcheck checks the structure of a Terraform configuration without
// Terraform providers: `terraform validate` and `plan` need provider
// plugins, which this repository's CI cannot download, so the mistakes they
// would catch are caught here by parsing the HCL.
//
// Check walks a root module and every local module it calls (recursively)
// and reports, each with its file and line:
//   - an argument of a module call that the module does not declare as a
//     variable, and a required variable (no default) the call does not pass;
//   - a module.NAME.OUTPUT reference to a module that is not called or to
//     an output it does not declare;
//   - a var.NAME reference to a variable the module does not declare;
//   - an IAM statement that allows `*`, `<service>:*`, any NotAction, or s3
//     actions on resource `*` (in data "aws_iam_policy_document" statements
//     and in jsonencode() policies; Deny statements may use wildcards);
//   - a templatefile() whose template uses a variable the call does not pass
//     (or is passed a variable it does not use), and a file() or
//     templatefile() path that does not exist;
//   - a *.tfvars(.example) file in the root that sets an undeclared variable
//     or leaves out a required one.
//
// Paths of file() and templatefile() are evaluated with path.module,
// path.root and the string defaults of the module's variables; a path that
// needs anything else is not checked. JSON configuration files (.tf.json)
// are read by terraform-config-inspect but not walked.
package tfcheck
