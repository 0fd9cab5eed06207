// Package openstore opens a store by URL: file:///abs/dir (the embedded
// default) or s3://bucket/prefix.
package openstore
