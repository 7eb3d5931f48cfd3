using Microsoft.Data.Sqlite;

namespace FarmPlugins.ReferenceFarm.Tests;

/// <summary>Reads the server's database directly, read-only: the audit the server keeps of accepted completions.</summary>
public static class Db
{
    public static Dictionary<string, int> CompletionsByTask(string dataDirectory, string jobId)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(dataDirectory, "farm.db")};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT t.id, count(c.task_idx) FROM tasks t JOIN jobs j ON j.seq=t.job_seq
            LEFT JOIN completions c ON c.job_seq=t.job_seq AND c.task_idx=t.idx WHERE j.id=$j GROUP BY t.id
            """;
        command.Parameters.AddWithValue("$j", jobId);
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            result[reader.GetString(0)] = reader.GetInt32(1);
        }

        return result;
    }
}
