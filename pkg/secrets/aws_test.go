package secrets_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/secrets"
)

// TestAWSResolver resolves {ssm: …} and {secretsManager: …} through the
// real SDK clients against a fake endpoint (no AWS here).
func TestAWSResolver(t *testing.T) {
	var targets []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.Header.Get("X-Amz-Target")
		targets = append(targets, target)
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		switch target {
		case "AmazonSSM.GetParameter":
			if in["Name"] != "/cohuron/prod/jwt-secret" || in["WithDecryption"] != true {
				w.WriteHeader(400)
				w.Write([]byte(`{"__type":"ParameterNotFound","message":"no such parameter"}`))
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{"Name": in["Name"], "Value": "jwt-from-ssm", "Type": "SecureString"}})
		case "secretsmanager.GetSecretValue":
			json.NewEncoder(w).Encode(map[string]any{"Name": in["SecretId"], "SecretString": "db-from-secrets-manager"})
		default:
			w.WriteHeader(400)
		}
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_SSM", srv.URL)
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))

	r := &secrets.Chain{AWS: &secrets.AWSResolver{Region: "us-east-1"}}
	ctx := context.Background()
	got, err := r.Resolve(ctx, manifest.Value{RefKind: manifest.RefSSM, Ref: "/cohuron/prod/jwt-secret"})
	if err != nil || got != "jwt-from-ssm" {
		t.Fatalf("ssm: %q, %v", got, err)
	}
	got, err = r.Resolve(ctx, manifest.Value{RefKind: manifest.RefSecretsManager, Ref: "cohuron/prod/db"})
	if err != nil || got != "db-from-secrets-manager" {
		t.Fatalf("secretsManager: %q, %v", got, err)
	}
	_, err = r.Resolve(ctx, manifest.Value{RefKind: manifest.RefSSM, Ref: "/cohuron/prod/missing"})
	if err == nil || !strings.Contains(err.Error(), "ssm:/cohuron/prod/missing") {
		t.Fatalf("missing parameter: %v, want an error naming the reference", err)
	}
	if strings.Join(targets, ",") != "AmazonSSM.GetParameter,secretsmanager.GetSecretValue,AmazonSSM.GetParameter" {
		t.Fatalf("calls %v", targets)
	}
}
