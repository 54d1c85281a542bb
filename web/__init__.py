"""Flask blueprints of the dashboard, one module per area; ``Main.create_app`` wires them."""
