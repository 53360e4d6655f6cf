// kv_cache.cpp — pending
