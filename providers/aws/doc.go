// Package aws is the AWS Secrets Manager provider (aws-sdk-go-v2), served by
// "provider-host plugin aws".
//
// Locations are secret ids or ARNs, with an optional JSON field: "prod/app/db", "prod/app#client_id",
// "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app-AbCdEf".
//
//   - SigningKeys: the version staged AWSCURRENT signs; AWSPREVIOUS verifies; AWSPENDING is published
//     for verification ahead of a rotation, so tokens signed right after the rotation verify
//     everywhere. Each version holds a PEM private key, or a JSON object with private_key or secret
//     (HS256) and optionally algorithm, not_before, not_after; a binary secret is a raw HS256 secret.
//   - Secret: the AWSCURRENT value (SecretString, or SecretBinary), or one field of its JSON.
//   - Credentials: the RDS rotation JSON shape (username, password, host, port, dbname, engine; other
//     fields become extra fields). Static: no lease.
//
// Credentials and region come from the SDK's standard chain (environment, shared config, web identity,
// ECS/EC2 roles); endpoint overrides it for VPC endpoints or an emulator. Errors are classified from
// the service's error codes and name the secret, never its value.
package aws
