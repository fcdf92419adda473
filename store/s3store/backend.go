package s3store

import (
	"context"

	"github.com/walstore/walstore/store"
)

// Backend is S3 (or MinIO) in the registry (store/storeurl). Credentials
// come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN (or MINIO_ACCESS_KEY and MINIO_SECRET_KEY), else
// ~/.aws/credentials and IAM roles. That conditional writes work is
// proven once per repository and remembered (Access.Known).
var Backend = store.Backend{
	Name:    "S3 or MinIO",
	Schemes: []string{"s3"},
	Example: "s3://bucket/prefix?endpoint=host:9000",
	Check: func(rawURL string) error {
		_, err := ParseURL(rawURL)
		return err
	},
	Open: func(ctx context.Context, rawURL string, a store.Access) (store.Store, error) {
		opt := Options{
			AccessKey: a.Env("AWS_ACCESS_KEY_ID"), SecretKey: a.Env("AWS_SECRET_ACCESS_KEY"), SessionToken: a.Env("AWS_SESSION_TOKEN"),
			ReadOnly: a.ReadOnly, ConditionalKnown: a.IsKnown(conditionalFact),
		}
		if opt.AccessKey == "" {
			opt.AccessKey, opt.SecretKey = a.Env("MINIO_ACCESS_KEY"), a.Env("MINIO_SECRET_KEY")
		}
		s, err := Open(ctx, rawURL, opt)
		if err != nil {
			return nil, err
		}
		if !a.ReadOnly {
			a.Learn(conditionalFact)
		}
		return s, nil
	},
}

// conditionalFact is what a client remembers once Open has checked the
// endpoint's conditional writes.
const conditionalFact = "conditional"
