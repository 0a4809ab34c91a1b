{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}

with orders as (

    select * from {{ ref('stg_orders') }}

),

payments as (

    select * from {{ ref('stg_payments') }}

),

order_payments as (

    select
        order_id,
        sum(case when payment_method = 'credit_card' then amount else 0 end) as credit_card_amount,
        sum(case when payment_method = 'bank_transfer' then amount else 0 end) as bank_transfer_amount,
        sum(case when payment_method = 'coupon' then amount else 0 end) as coupon_amount,
        sum(case when payment_method = 'gift_card' then amount else 0 end) as gift_card_amount,
        sum(amount) as amount,
        count(*) as payment_count,
        max(created_at) as last_payment_at
    from payments
    group by order_id

),

joined as (

    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        coalesce(order_payments.credit_card_amount, 0) as credit_card_amount,
        coalesce(order_payments.bank_transfer_amount, 0) as bank_transfer_amount,
        coalesce(order_payments.coupon_amount, 0) as coupon_amount,
        coalesce(order_payments.gift_card_amount, 0) as gift_card_amount,
        coalesce(order_payments.amount, 0) as amount,
        coalesce(order_payments.payment_count, 0) as payment_count,
        -- An order changes when its status changes or when a payment arrives.
        greatest(
            orders.updated_at,
            coalesce(order_payments.last_payment_at, orders.updated_at)
        ) as last_updated_at
    from orders
    left join order_payments
        on orders.order_id = order_payments.order_id

)

select * from joined

{% if is_incremental() %}
-- Only re-process orders touched since the last run, with a lookback window
-- for late-arriving data. Rows are replaced by order_id (delete+insert).
where last_updated_at >= (
    select max(last_updated_at) - interval '{{ var("fct_orders_lookback_days") }} days'
    from {{ this }}
)
{% endif %}
