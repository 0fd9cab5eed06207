package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cohuron/deploy/pkg/fault"
	"github.com/cohuron/deploy/pkg/store"
)

// PartSize is the multipart part size; objects larger than it are
// uploaded in parts.
const PartSize = 8 << 20

// MinRate is the fewest body bytes a download must deliver per Timeout
// (4 KiB per 30s: about 140 bytes/s).
const MinRate = 4 << 10

// Options configure the client beyond the standard AWS chain.
type Options struct {
	// Endpoint overrides the S3 endpoint (http://127.0.0.1:9000 for MinIO)
	// and turns on path-style addressing. Empty: AWS.
	Endpoint string
	// Region when AWS_REGION and the profile give none (default us-east-1).
	// On EC2 set it in the agent config or AWS_REGION.
	Region string
	// HTTPClient replaces the SDK's (and Timeout's transport settings).
	HTTPClient *http.Client
	// Timeout bounds a stalled store: no response headers, or no data on
	// a connection, for this long fails the request, and so does a body
	// arriving slower than MinRate bytes per Timeout (a slow drip).
	// Default 30s.
	Timeout time.Duration
	// MaxAttempts is the SDK's tries per request (0: the SDK's default of
	// 3). Callers that wrap the store in retrystore set 1, so that retries
	// happen, and are logged and counted, in one place.
	MaxAttempts int
}

// Store keeps objects under s3://bucket/prefix.
type Store struct {
	bucket, prefix string
	client         *s3.Client
	tm             *transfermanager.Client
	timeout        time.Duration
}

var _ store.Store = (*Store)(nil)

// Open builds a client for s3://bucket/prefix. It makes no request.
func Open(ctx context.Context, bucket, prefix string, o Options) (*Store, error) {
	if bucket == "" {
		return nil, errors.New("s3 store: bucket is empty")
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := store.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("s3 store prefix: %w", err)
		}
		prefix += "/"
	}
	// Region comes from AWS_REGION/profile or Options, never from IMDS: a
	// lookup there fails when IMDS is off and probes the network elsewhere.
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	var loadOpts []func(*config.LoadOptions) error
	if o.HTTPClient != nil {
		loadOpts = append(loadOpts, config.WithHTTPClient(o.HTTPClient))
	} else {
		// The SDK's client waits forever for a store that accepted the
		// connection and then said nothing.
		loadOpts = append(loadOpts, config.WithHTTPClient(awshttp.NewBuildableClient().
			WithReadTimeout(o.Timeout).
			WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = o.Timeout })))
	}
	if o.MaxAttempts > 0 {
		loadOpts = append(loadOpts, config.WithRetryMaxAttempts(o.MaxAttempts))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = o.Region
		if cfg.Region == "" {
			cfg.Region = "us-east-1"
		}
	}
	endpoint := strings.TrimSpace(o.Endpoint)
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
			so.UsePathStyle = true
		}
	})
	tm := transfermanager.New(client, func(to *transfermanager.Options) {
		to.PartSizeBytes = PartSize
		to.MultipartUploadThreshold = PartSize
		to.Concurrency = 4
	})
	return &Store{bucket: bucket, prefix: prefix, client: client, tm: tm, timeout: o.Timeout}, nil
}

func (s *Store) String() string { return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/") }

func (s *Store) key(k string) (string, error) {
	if err := store.CheckKey(k); err != nil {
		return "", err
	}
	return s.prefix + k, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key, ifNoneMatch string) (io.ReadCloser, store.Info, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, store.Info{}, err
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &k}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(ifNoneMatch)
	}
	ctx, cancel := context.WithCancel(ctx)
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		cancel()
		return nil, store.Info{}, s.classify(key, err)
	}
	info := store.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag)}
	if out.LastModified != nil {
		info.ModTime = *out.LastModified
	}
	return watchBody(out.Body, cancel, fmt.Sprintf("%s in %s", key, s), s.timeout, MinRate), info, nil
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	k, err := s.key(key)
	if err != nil {
		return store.Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return store.Info{}, s.classify(key, err)
	}
	info := store.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag)}
	if out.LastModified != nil {
		info.ModTime = *out.LastModified
	}
	return info, nil
}

// Put implements store.Store; large bodies go up in parts.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, false)
}

// PutIfAbsent implements store.Store with If-None-Match: *.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, key, r, size, true)
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	in := &transfermanager.UploadObjectInput{Bucket: &s.bucket, Key: &k, Body: r}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := s.tm.UploadObject(ctx, in); err != nil {
		return s.classify(key, err)
	}
	return nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := store.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	full := s.prefix + prefix
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &full})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.classify(prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(o.Key), s.prefix))
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// classify maps S3 answers to the store's errors by status, not text.
func (s *Store) classify(key string, err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return fmt.Errorf("%s in %s: %w", key, s, store.ErrNotFound)
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%s in %s: %w", key, s, store.ErrNotFound)
		case http.StatusNotModified:
			return store.ErrNotModified
		case http.StatusPreconditionFailed, http.StatusConflict:
			return fmt.Errorf("%s in %s: %w", key, s, store.ErrExists)
		case http.StatusBadRequest, http.StatusForbidden:
			// Credentials, permissions or the host clock (RequestTimeTooSkewed):
			// retrying does not help, a human does.
			return fault.Usage(fmt.Errorf("%s in %s: %w", key, s, err))
		}
	}
	return fmt.Errorf("%s in %s: %w", key, s, err)
}

// EnsureBucket creates the bucket if it does not exist (for MinIO, demos
// and tests; production buckets come from Terraform).
func (s *Store) EnsureBucket(ctx context.Context) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("creating bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Delete removes an object (tests and maintenance; the Store interface has
// no delete: releases are immutable).
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		return s.classify(key, err)
	}
	return nil
}
