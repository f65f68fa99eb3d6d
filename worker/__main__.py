"""`python -m worker --pool supaflow-warm --limit 10` (the same as `supaflow worker`)."""

from worker.serve import main

main()
