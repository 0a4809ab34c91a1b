-- Revenue per calendar month. date_trunc() exists on DuckDB and PostgreSQL;
-- the cast keeps the result a DATE on both.
with orders as (

    select * from {{ ref('fct_orders') }}

)

select
    cast(date_trunc('month', order_date) as date) as order_month,
    count(*) as number_of_orders,
    count(distinct customer_id) as number_of_customers,
    cast(sum(case when status = 'returned' then 0 else amount end) as numeric(16, 2)) as net_revenue,
    cast(sum(case when status = 'returned' then amount else 0 end) as numeric(16, 2)) as returned_amount
from orders
group by 1
order by 1
