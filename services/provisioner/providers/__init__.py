"""Provider adapters, one module each, behind `base.Provider`."""
