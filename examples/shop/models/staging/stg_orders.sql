-- depends_on: {{ ref('raw_orders') }}

with source as (

    select * from {{ source('shop_raw', 'raw_orders') }}

),

renamed as (

    select
        id as order_id,
        customer_id,
        order_date,
        lower(status) as status,
        updated_at,
        _loaded_at as loaded_at
    from source

)

select * from renamed
