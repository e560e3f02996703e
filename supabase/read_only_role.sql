-- skill_pipeline_reader: reads exactly what skill-pipeline reads, writes nothing.
create role skill_pipeline_reader nologin;
grant usage on schema public to skill_pipeline_reader;
grant select (id, name, description, active, created_at) on public.skills to skill_pipeline_reader;
grant select (id, skill_id, difficulty, question, options_json, correct_option, explanation)
    on public.challenges to skill_pipeline_reader;
grant select (id, challenge_id, user_id, is_correct, response_time, confidence)
    on public.answers to skill_pipeline_reader;
-- Functions are executable by PUBLIC by default (and Supabase grants anon/authenticated too).
revoke execute on function public.skill_pipeline_read(text, text, integer) from public;
grant execute on function public.skill_pipeline_read(text, text, integer) to skill_pipeline_reader;
-- With row level security on (Supabase's default), a grant alone shows no rows: a read policy each.
create policy skill_pipeline_read on public.skills for select to skill_pipeline_reader using (true);
create policy skill_pipeline_read on public.challenges for select to skill_pipeline_reader using (true);
create policy skill_pipeline_read on public.answers for select to skill_pipeline_reader using (true);
