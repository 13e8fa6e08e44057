"""What people read: the pull-request report, its safety check, the model card, plot pages."""
