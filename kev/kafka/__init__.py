"""The embedded Apache Kafka launcher: Kafka's own jars from Maven Central, KRaft on the JVM, cached."""
