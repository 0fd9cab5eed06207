// Package s3store is the store in an S3 bucket (s3://bucket/prefix), and
// the only package that imports the AWS SDK's S3 client.
//
// Credentials come from the standard chain (env, profile, EC2 instance
// role); an endpoint override (MinIO) switches to path-style addressing.
// Large objects are uploaded in parts; releases are claimed with
// conditional writes (If-None-Match: *), so two publishers cannot both
// write the same seq.
package s3store
