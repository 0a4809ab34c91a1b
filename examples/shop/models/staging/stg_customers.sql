-- The raw table is filled by the raw_customers seed; this comment gives the
-- model an explicit edge to the seed so `dbt build` loads it first.
-- depends_on: {{ ref('raw_customers') }}

with source as (

    select * from {{ source('shop_raw', 'raw_customers') }}

),

renamed as (

    select
        id as customer_id,
        first_name,
        last_name,
        first_name || ' ' || last_name as full_name,
        lower(email) as email,
        upper(country_code) as country_code,
        signup_date,
        _loaded_at as loaded_at
    from source

)

select * from renamed
