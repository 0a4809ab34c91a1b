-- Singular test: every order's amount in fct_orders must equal the sum of its
-- payments in stg_payments. Returns the orders that disagree (none expected).
with payments as (

    select order_id, sum(amount) as paid
    from {{ ref('stg_payments') }}
    group by order_id

)

select
    fct_orders.order_id,
    fct_orders.amount,
    coalesce(payments.paid, 0) as paid
from {{ ref('fct_orders') }} as fct_orders
left join payments
    on fct_orders.order_id = payments.order_id
where fct_orders.amount <> coalesce(payments.paid, 0)
