-- skill_pipeline_read: one page of a skill's challenges with their answers packed as arrays.
--
-- Why: promotion needs every answer of a skill. Read through PostgREST table by table that is a
-- request per 1,000 answers (1,002 requests for 10^6 answers); this function returns a page of
-- challenges (keyset on the challenge id: p_after, p_limit) with the per-answer figures the
-- statistics need as aligned arrays, so the request count follows the challenges, not the answers.
-- The pipeline calls it through the supabase SDK (client.rpc('skill_pipeline_read', {...})) and
-- falls back to keyset pages of the tables when it is not installed (PostgREST PGRST202).
--
-- SECURITY INVOKER: it runs with the caller's rights, so it reads exactly what the caller's role
-- may read (row level security applies as to a direct select); STABLE: it writes nothing.
-- User ids never leave the database: user_key is the first 16 hex digits of
-- sha256(skill_id || ':' || user_id), the same value skill_store.user_key() computes in Python.
-- Ids are compared as text in the "C" collation (bytewise, as the client checks the order), so
-- the function works whether the app's ids are text or uuid and whatever the database's collation.
create or replace function public.skill_pipeline_read(
    p_skill_id text,
    p_after text default null,
    p_limit integer default 100
)
returns table (
    id text,
    skill_id text,
    difficulty integer,
    question text,
    options_json jsonb,
    correct_option integer,
    explanation text,
    answer_count integer,
    is_correct boolean[],
    response_time double precision[],
    confidence double precision[],
    user_key text[]
)
language sql
stable
security invoker
set search_path = public, pg_temp
as $$
    select
        c.id::text,
        c.skill_id::text,
        c.difficulty::integer,
        c.question::text,
        to_jsonb(c.options_json),
        c.correct_option::integer,
        c.explanation::text,
        coalesce(a.answer_count, 0),
        coalesce(a.is_correct, '{}'),
        coalesce(a.response_time, '{}'),
        coalesce(a.confidence, '{}'),
        coalesce(a.user_key, '{}')
    from (
        -- The page of challenges first: the answers are aggregated for this page only.
        select ch.id, ch.skill_id, ch.difficulty, ch.question, ch.options_json, ch.correct_option, ch.explanation
        from public.challenges ch
        where ch.skill_id::text = p_skill_id
          and (p_after is null or ch.id::text collate "C" > p_after)
        order by ch.id::text collate "C"
        limit least(greatest(coalesce(p_limit, 100), 1), 1000)
    ) c
    left join lateral (
        -- One aggregate node over one row stream: the four arrays are aligned element by element.
        select
            count(*)::integer as answer_count,
            array_agg(x.is_correct) as is_correct,
            array_agg(x.response_time::double precision) as response_time,
            array_agg(x.confidence::double precision) as confidence,
            array_agg(left(encode(sha256(convert_to(c.skill_id::text || ':' || x.user_id::text, 'UTF8')), 'hex'), 16))
                as user_key
        from (
            select y.is_correct, y.response_time, y.confidence, y.user_id
            from public.answers y where y.challenge_id = c.id order by y.id
        ) x
    ) a on true
    order by c.id::text collate "C"
$$;

comment on function public.skill_pipeline_read(text, text, integer) is
    'skill-pipeline: a page of a skill''s challenges with answers packed per challenge (read only, invoker rights)';
