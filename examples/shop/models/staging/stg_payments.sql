-- depends_on: {{ ref('raw_payments') }}

with source as (

    select * from {{ source('shop_raw', 'raw_payments') }}

),

renamed as (

    select
        id as payment_id,
        order_id,
        lower(payment_method) as payment_method,
        amount_cents,
        {{ cents_to_dollars('amount_cents') }} as amount,
        created_at,
        _loaded_at as loaded_at
    from source

)

select * from renamed
