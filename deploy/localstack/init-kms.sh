#!/bin/sh
# LocalStack ready hook: the KMS key veil wraps app keys with, and the analytics and blob buckets.
set -eu
if ! awslocal kms describe-key --key-id alias/veil >/dev/null 2>&1; then
  key_id=$(awslocal kms create-key --description "veil root key" --query KeyMetadata.KeyId --output text)
  awslocal kms create-alias --alias-name alias/veil --target-key-id "$key_id"
fi
awslocal s3 mb s3://veil-analytics 2>/dev/null || true
awslocal s3 mb s3://veil-blobs 2>/dev/null || true
