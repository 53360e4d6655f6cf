// context.cpp — pending
