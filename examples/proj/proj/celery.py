from minicelery import Celery

# As in Celery's "Next Steps" guide. With no broker given, minicelery uses its embedded Redis;
# for a Redis server write broker='redis://localhost:6379/0', backend='redis://localhost:6379/0'
# (or set MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND).
app = Celery("proj", include=["proj.tasks"])

# Optional configuration, see the application user guide.
app.conf.update(
    result_expires=3600,
)

if __name__ == "__main__":
    app.start()
