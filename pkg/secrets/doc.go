// Package secrets resolves the secret references of env files on the
// host: {file: PATH} from a local file (tests, on-prem), {ssm: NAME} from
// AWS SSM Parameter Store (decrypted), {secretsManager: ID} from AWS
// Secrets Manager. It never logs or returns a secret value in an error.
package secrets
