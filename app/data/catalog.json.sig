{
  "algorithm": "ed25519",
  "key_id": "415b2fa4a54f45d3",
  "signature": "+VLSViRJu1abJrMZuIgHgWFQQvWNh8VCss9yelaPV9TUr2AOs4NOcx9t7MUT5NYjHBBSKCR9yZra8cg7rgbbDA=="
}
