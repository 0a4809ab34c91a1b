with customers as (

    select * from {{ ref('stg_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

customer_orders as (

    select
        customer_id,
        min(order_date) as first_order_date,
        max(order_date) as most_recent_order_date,
        count(*) as number_of_orders,
        cast(sum(case when status = 'returned' then 0 else amount end) as numeric(16, 2)) as lifetime_value
    from orders
    group by customer_id

),

final as (

    select
        customers.customer_id,
        customers.full_name,
        customers.email,
        customers.country_code,
        customers.signup_date,
        customer_orders.first_order_date,
        customer_orders.most_recent_order_date,
        coalesce(customer_orders.number_of_orders, 0) as number_of_orders,
        coalesce(customer_orders.lifetime_value, 0) as lifetime_value,
        case
            when customer_orders.customer_id is null then 'prospect'
            when customer_orders.lifetime_value >= 200 then 'vip'
            when customer_orders.number_of_orders > 1 then 'repeat'
            else 'one_time'
        end as customer_segment
    from customers
    left join customer_orders
        on customers.customer_id = customer_orders.customer_id

)

select * from final
