/* One of the tiny compile units of the build-probe test project. */
int unit11(int x);

int unit11(int x)
{
	int acc = 11;
	for (int k = 0; k < x; k++)
		acc = acc * 31 + k;
	return acc;
}
