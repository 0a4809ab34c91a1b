"""Outbound webhooks in dbt Cloud's shape: subscriptions, payloads, signed deliveries."""
