"""Operations: what each command does, as functions over a store."""
